import json

from service_feature.executor.results import (
    parse_any,
    parse_cargo,
    parse_go_json,
    parse_javascript,
    parse_junit,
    parse_pytest_text,
)
from service_feature.models import TestOutcome

JUNIT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_a" name="test_ok" time="0.001"/>
<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.test_b" name="test_err"><error message="fixture boom"/></testcase>
<testcase classname="tests.test_b" name="test_skip"><skipped message="later"/></testcase>
</testsuite></testsuites>"""


def test_junit_counts_and_failures() -> None:
    counts = parse_junit(JUNIT)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.errored, counts.skipped) == (1, 1, 1, 1)
    assert [(c.name, c.outcome) for c in counts.failures] == [
        ("tests.test_a::test_bad", TestOutcome.failed),
        ("tests.test_b::test_err", TestOutcome.errored),
    ]
    assert counts.failures[0].message == "assert 1 == 2"


def test_junit_with_entities_or_garbage_is_refused() -> None:
    assert parse_junit(b'<!DOCTYPE x [<!ENTITY a "b">]><testsuite/>') is None
    assert parse_junit(b"<testsuite") is None
    assert parse_junit(b"") is None


def test_pytest_text_summary() -> None:
    output = (
        "F.\nFAILED tests/test_x.py::test_y - assert 0\n1 failed, 3 passed, 1 skipped, 2 errors in 0.12s\n"
    )
    counts = parse_pytest_text(output)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.errored, counts.skipped) == (3, 1, 2, 1)
    assert counts.cases[0].name == "tests/test_x.py::test_y"
    assert parse_pytest_text("no tests ran in 0.01s") is None


def test_go_test_json() -> None:
    lines = [
        {"Action": "run", "Package": "ex/greet", "Test": "TestHello"},
        {"Action": "output", "Package": "ex/greet", "Test": "TestHello", "Output": "want Hello\n"},
        {"Action": "fail", "Package": "ex/greet", "Test": "TestHello"},
        {"Action": "pass", "Package": "ex/greet", "Test": "TestBye"},
        {"Action": "skip", "Package": "ex/greet", "Test": "TestLater"},
        {"Action": "fail", "Package": "ex/greet"},
    ]
    counts = parse_go_json("\n".join(json.dumps(line) for line in lines))
    assert counts is not None
    assert (counts.passed, counts.failed, counts.skipped) == (1, 1, 1)
    assert counts.failures[0].name == "ex/greet.TestHello"
    assert "want Hello" in counts.failures[0].message


def test_cargo_sums_every_test_binary() -> None:
    output = (
        "test tests::a ... ok\ntest tests::b ... FAILED\n"
        "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n"
        "test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out\n"
    )
    counts = parse_cargo(output)
    assert counts is not None
    assert (counts.passed, counts.failed, counts.skipped) == (3, 1, 1)
    assert counts.failures[0].name == "tests::b"


def test_jest_and_tap() -> None:
    jest = parse_javascript("Tests:       1 failed, 4 passed, 5 total")
    assert jest is not None
    assert (jest.passed, jest.failed) == (4, 1)
    tap = parse_javascript("# tests 3\n# pass 2\n# fail 1\n")
    assert tap is not None
    assert (tap.passed, tap.failed) == (2, 1)


def test_parse_any_tries_each_format() -> None:
    counts = parse_any("===== 2 passed in 0.01s =====")
    assert counts is not None
    assert counts.passed == 2
    assert parse_any("hello") is None


NODE_TAP = """TAP version 13
# Subtest: adds
ok 1 - adds
  ---
  duration_ms: 1.1
  ...
# Subtest: fails
not ok 2 - fails
  ---
  duration_ms: 1.2
  failureType: 'testCodeFailure'
  error: |-
    Expected values to be strictly equal:

    2 !== 3
  code: 'ERR_ASSERTION'
  ...
# Subtest: later
ok 3 - later # SKIP
  ---
  duration_ms: 0.2
  ...
# Subtest: group
    # Subtest: inner ok
    ok 1 - inner ok
      ---
      duration_ms: 0.1
      ...
    # Subtest: inner bad
    not ok 2 - inner bad
      ---
      duration_ms: 0.2
      error: 'boom'
      ...
    1..2
not ok 4 - group
  ---
  error: '1 subtest failed'
  ...
1..4
# tests 6
# suites 0
# pass 2
# fail 3
# cancelled 0
# skipped 1
# todo 0
"""


def test_node_test_tap_names_every_test_and_keeps_nodes_counts() -> None:
    counts = parse_javascript(NODE_TAP)

    assert counts is not None
    assert (counts.passed, counts.failed, counts.errored, counts.skipped) == (2, 3, 0, 1)
    assert [(c.name, c.outcome) for c in counts.cases] == [
        ("adds", TestOutcome.passed),
        ("fails", TestOutcome.failed),
        ("later", TestOutcome.skipped),
        ("group > inner ok", TestOutcome.passed),
        ("group > inner bad", TestOutcome.failed),
        ("group", TestOutcome.failed),
    ]
    assert counts.failures[0].message == "Expected values to be strictly equal:\n\n2 !== 3"
    assert counts.failures[1].message == "boom"
    assert counts.unattributed == 0


def test_plain_tap_without_a_trailer_is_counted_from_its_lines() -> None:
    counts = parse_javascript("1..3\nok 1 - a\nnot ok 2 - b\nok 3 - c # TODO later\n")

    assert counts is not None
    assert (counts.passed, counts.failed, counts.skipped) == (1, 1, 1)


def test_cargo_names_tests_by_binary_with_their_panic_message() -> None:
    output = """     Running unittests src/lib.rs (target/debug/deps/tiny-1)

running 2 tests
test tests::fails ... FAILED
test tests::adds ... ok

failures:

---- tests::fails stdout ----
thread 'tests::fails' panicked at src/lib.rs:5:26:
one and one

failures:
    tests::fails

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running tests/api.rs (target/debug/deps/api-2)

running 1 test
test adds ... ignored

test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""
    counts = parse_cargo(output)

    assert counts is not None
    assert [(c.name, c.outcome) for c in counts.cases] == [
        ("src/lib.rs::tests::fails", TestOutcome.failed),
        ("src/lib.rs::tests::adds", TestOutcome.passed),
        ("tests/api.rs::adds", TestOutcome.skipped),
    ]
    assert "one and one" in counts.failures[0].message


def test_cargo_tells_apart_workspace_members_whose_binaries_have_the_same_source() -> None:
    member = """     Running unittests src/lib.rs (target/debug/deps/{crate}-{hash})

running 1 test
test tests::works ... {outcome}

failures:

---- tests::works stdout ----
{crate} broke

failures:
    tests::works

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""
    output = member.format(crate="alpha", hash="1a", outcome="ok") + member.format(
        crate="beta", hash="2b", outcome="FAILED"
    )
    same_crate_name = member.format(crate="api", hash="3c", outcome="ok") + member.format(
        crate="api", hash="4d", outcome="ok"
    )

    counts = parse_cargo(output)
    twins = parse_cargo(same_crate_name)

    assert counts is not None
    assert [(c.name, c.outcome) for c in counts.cases] == [
        ("src/lib.rs (alpha)::tests::works", TestOutcome.passed),
        ("src/lib.rs (beta)::tests::works", TestOutcome.failed),
    ]
    assert counts.failures[0].message == "beta broke"
    assert twins is not None
    assert [c.name for c in twins.cases] == [
        "src/lib.rs (api-3c)::tests::works",
        "src/lib.rs (api-4d)::tests::works",
    ]


def test_jest_failures_are_named_and_a_bare_summary_is_unattributed() -> None:
    counts = parse_javascript(
        "  ● math \u203a adds\n\n    expect(received)\nTests:       1 failed, 2 passed, 3 total"
    )
    bare = parse_javascript("Tests:       2 failed, 1 passed, 3 total")

    assert counts is not None
    assert [case.name for case in counts.failures] == ["math \u203a adds"]
    assert counts.unattributed == 0
    assert bare is not None
    assert bare.unattributed == 2
