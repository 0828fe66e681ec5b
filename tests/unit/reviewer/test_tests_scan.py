from __future__ import annotations

from typing import Any

from service_feature.diffs import FileChange, parse_diff
from service_feature.models import Language, Severity, Specification, TestResult
from service_feature.reviewer.scanners import tests_scan
from tests.support.review_corpus import MakePatch, run_result

SPEC = Specification(title="feature", language=Language.python)
ASKS_FOR_TESTS = Specification(
    title="feature", requirements=["Parse dates", "Cover the parser with tests"], language=Language.python
)


def run(**fields: Any) -> TestResult:
    result = run_result(fields)
    assert result is not None
    return result


def failure(name: str) -> dict[str, str]:
    return {"name": name, "outcome": "failed"}


def rules(
    tests: TestResult | None,
    base: TestResult | None = None,
    changes: list[FileChange] | None = None,
    spec: Specification = SPEC,
) -> list[tuple[str, Severity]]:
    return [(f.rule_id, f.severity) for f in tests_scan.scan(changes or [], spec, tests, base)]


def test_a_passing_run_is_fine() -> None:
    assert rules(run()) == []


def test_a_failing_run_is_critical_and_names_the_tests() -> None:
    (finding,) = tests_scan.scan([], SPEC, run(failed=1, failures=[failure("t::test_vat")]), None)

    assert (finding.rule_id, finding.severity) == (tests_scan.FAILING, Severity.critical)
    assert "t::test_vat" in finding.message


def test_failures_that_also_fail_on_the_base_are_not_blamed() -> None:
    tests = run(failed=1, failures=[failure("t::test_legacy")])
    base = run(failed=1, failures=[failure("t::test_legacy")])

    assert rules(tests, base) == [("tests.preexisting-failure", Severity.info)]


def test_a_new_failure_beside_a_preexisting_one_is_blamed() -> None:
    tests = run(failed=2, failures=[failure("t::test_legacy"), failure("t::test_new")])
    base = run(failed=1, failures=[failure("t::test_legacy")])

    (finding,) = tests_scan.scan([], SPEC, tests, base)

    assert finding.rule_id == tests_scan.FAILING
    assert "t::test_new" in finding.message
    assert "1 more fail on the base too" in finding.message


def test_failures_without_names_cannot_be_excused() -> None:
    assert rules(run(failed=1), run(failed=1)) == [(tests_scan.FAILING, Severity.critical)]


def test_timeouts_errors_and_empty_runs_are_failing() -> None:
    base = run(failed=1, failures=[failure("t::a")])

    assert rules(run(timed_out=True, failed=1, failures=[failure("t::a")]), base) == [
        (tests_scan.FAILING, Severity.critical)
    ]
    assert rules(run(errored=1)) == [(tests_scan.FAILING, Severity.critical)]
    assert rules(run(passed=0)) == [(tests_scan.FAILING, Severity.critical)]
    assert rules(run(exit_code=2)) == [(tests_scan.FAILING, Severity.critical)]


def test_a_run_that_did_not_happen_is_high() -> None:
    assert rules(None) == [("tests.not-run", Severity.high)]


def test_requirements_asking_for_tests_need_a_test_in_the_patch(make_patch: MakePatch) -> None:
    base = {"app/dates.py": "X = 1\n", "tests/test_dates.py": "def test_x() -> None:\n    pass\n"}
    code_only = parse_diff(make_patch(base, {"app/dates.py": "X = 2\n"}).diff)
    with_test = parse_diff(
        make_patch(
            base, {"app/dates.py": "X = 2\n", "tests/test_dates.py": "def test_y() -> None:\n    pass\n"}
        ).diff
    )
    inline_rust_test = parse_diff(
        make_patch({"src/lib.rs": "\n"}, {"src/lib.rs": "#[test]\nfn parses() {}\n"}).diff
    )
    deleting_tests = parse_diff(make_patch(base, {"tests/test_dates.py": None}).diff)

    assert rules(run(), changes=code_only, spec=ASKS_FOR_TESTS) == [("tests.none-added", Severity.high)]
    assert rules(run(), changes=with_test, spec=ASKS_FOR_TESTS) == []
    assert rules(run(), changes=inline_rust_test, spec=ASKS_FOR_TESTS) == []
    assert rules(run(), changes=deleting_tests, spec=ASKS_FOR_TESTS) == [("tests.none-added", Severity.high)]
    assert rules(run(), changes=code_only, spec=SPEC) == []


def test_test_definitions_are_recognised_in_each_language() -> None:
    lines = [
        "def test_parse():",
        "    async def test_fetch(client):",
        "func TestParse(t *testing.T) {",
        'it("parses", () => {',
        "test.each(cases)('parses %s', (c) => {",
        "#[tokio::test]",
    ]

    assert [next(tests_scan.defined_tests(line), None) is not None for line in lines] == [
        True,
        True,
        True,
        True,
        False,
        True,
    ]
    assert list(tests_scan.defined_tests("def helper():")) == []
