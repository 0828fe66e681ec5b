"""The words a feature's record uses for its test runs: the preparation summary and the failure reasons."""

from typing import Any

import pytest

from service_feature.models import TestCase, TestOutcome, TestResult
from service_feature.worker.reasons import (
    failing_tests,
    never_passed_reason,
    output_tail,
    preparation_summary,
    untestable_reason,
)

PYTEST = "python -m pytest -q"
BASELINE = {
    "commit": "abc123",
    "passed": 3,
    "failed": 1,
    "errored": 0,
    "skipped": 0,
    "unattributed_failures": 0,
    "exit_code": 1,
    "timed_out": False,
    "duration_seconds": 1.5,
    "output_tail": "…",
    "cached": True,
}


def _result(**fields: Any) -> TestResult:
    return TestResult(**{"command": PYTEST, "sandbox": "bwrap", "exit_code": 1, **fields})


# -- output tails --------------------------------------------------------------------------------------


def test_the_tail_keeps_the_last_non_blank_lines() -> None:
    text = "\n".join(f"line {n}\n" for n in range(30))
    assert output_tail(text, lines=3) == "line 27\nline 28\nline 29"
    assert output_tail("   \n\n") == ""
    assert len(output_tail("x" * 10_000)) == 2000


# -- a base that cannot be tested ----------------------------------------------------------------------


def test_a_failed_setup_names_the_step_the_command_and_the_output() -> None:
    pip_output = "\n".join(["Collecting nothing-here", *["noise"] * 30, "ERROR: No matching distribution"])
    untestable = (
        f"environment: dependency setup failed: `pip install -r requirements.txt` (exit 1)\n{pip_output}"
    )
    result = _result(
        command="setup", exit_code=None, errored=1, output_tail=untestable, untestable=untestable
    )

    reason = untestable_reason(result)

    headline, *tail = reason.splitlines()
    assert headline == "environment: dependency setup failed: `pip install -r requirements.txt` (exit 1)"
    assert tail[-1] == "ERROR: No matching distribution"
    assert len(tail) == 15  # the output's last lines, not all of it


def test_a_missing_toolchain_is_an_environment_problem() -> None:
    result = _result(command="", exit_code=None, untestable="go is not installed on the executor")
    assert untestable_reason(result) == "environment: go is not installed on the executor"


def test_the_preparation_summary_of_an_untestable_base() -> None:
    untestable = "environment: dependency setup failed: `pip install .` (exit 1)\nERROR: boom"
    result = _result(command="setup", exit_code=None, output_tail=untestable, untestable=untestable)

    summary = preparation_summary(result)

    assert summary["testable"] is False
    assert summary["setup"] == "failed"
    assert summary["baseline"] is None
    assert summary["untestable"] == "environment: dependency setup failed: `pip install .` (exit 1)"
    assert summary["log_tail"].endswith("ERROR: boom")


@pytest.mark.parametrize(
    ("environment", "setup"),
    [
        ({"key": "k", "installed": True, "cached": True, "setup_seconds": 0.0}, "cached"),
        ({"key": "k", "installed": True, "cached": False, "setup_seconds": 12.3}, "installed"),
        ({"key": "k", "installed": False, "cached": False, "setup_seconds": 0.0}, "not needed"),
    ],
)
def test_the_preparation_summary_of_a_testable_base(environment: dict[str, Any], setup: str) -> None:
    result = _result(passed=3, failed=1, baseline=BASELINE, environment=environment)

    summary = preparation_summary(result)

    assert summary["testable"] is True
    assert summary["setup"] == setup
    assert summary["setup_seconds"] == environment["setup_seconds"]
    assert summary["environment_cached"] is environment["cached"]
    assert summary["baseline"]["passed"] == 3
    assert summary["baseline"]["cached"] is True
    assert "output_tail" not in summary["baseline"]
    assert "log_tail" not in summary


# -- tests that never passed ---------------------------------------------------------------------------


def test_failing_tests_are_named_after_the_attempts() -> None:
    names = [f"tests/test_a.py::test_{n}" for n in range(7)]
    result = _result(
        passed=3,
        failed=7,
        baseline=BASELINE,
        classification={"broken": names[:2], "new_failing": names[2:], "still_failing": ["old"]},
    )

    reason = never_passed_reason(result, 3)

    assert reason == (
        "tests still failing after 3 attempt(s): 2 broken by the patch, 5 new failing: "
        "tests/test_a.py::test_0, tests/test_a.py::test_1, tests/test_a.py::test_2, "
        "tests/test_a.py::test_3, tests/test_a.py::test_4, … and 2 more"
    )
    assert "old" not in failing_tests(result)  # failing on the base already: not the patch's fault


def test_without_a_baseline_every_failure_is_named() -> None:
    failures = [
        TestCase(name="test_x", outcome=TestOutcome.failed),
        TestCase(name="test_y", outcome=TestOutcome.errored),
    ]
    result = _result(passed=1, failed=1, errored=1, failures=failures)
    assert never_passed_reason(
        result, 2
    ) == "tests still failing after 2 attempt(s): 1 failed, 1 errored: " + ("test_x, test_y")


def test_a_suite_that_cannot_run_shows_the_command_and_its_output() -> None:
    output = "ERROR collecting tests/test_a.py\nE   SyntaxError: invalid syntax\n1 error in 0.1s"
    result = _result(exit_code=2, errored=1, unattributed_failures=1, baseline=BASELINE, output_tail=output)

    reason = never_passed_reason(result, 3)

    headline, *tail = reason.splitlines()
    assert headline == (
        f"the test suite could not run after 3 attempt(s): `{PYTEST}` exited 2 without naming a failing "
        "test (a collection, import or build error?)"
    )
    assert tail == output.splitlines()


def test_a_failed_setup_of_the_patch_says_which_files_changed() -> None:
    output = "dependency setup failed: `pip install -r requirements.txt` (exit 1)\nERROR: no such package"
    result = _result(
        command="setup",
        exit_code=None,
        errored=1,
        output_tail=output,
        dependency_files_changed=["requirements.txt"],
    )

    reason = never_passed_reason(result, 1)

    assert reason == (
        "dependency setup failed on the patched run after 1 attempt(s) (the patch changed requirements.txt)\n"
        "`pip install -r requirements.txt` (exit 1)\nERROR: no such package"
    )


def test_a_timed_out_run_and_a_run_without_tests() -> None:
    timed_out = never_passed_reason(_result(exit_code=None, timed_out=True), 2)
    assert timed_out == f"tests timed out after 2 attempt(s): `{PYTEST}`"
    nothing = never_passed_reason(_result(exit_code=0), 1)
    assert nothing == f"no test passed after 1 attempt(s): `{PYTEST}` ran none"


def test_a_run_past_the_disk_quota_says_so() -> None:
    marker = "the disk quota of 16 MB (workspace, /tmp and /dev/shm together) was exceeded"
    result = _result(
        exit_code=1, failed=1, disk_quota_exceeded=True, output_tail=f"OSError: [Errno 28]\n{marker}"
    )
    reason = never_passed_reason(result, 3)
    assert reason.startswith(f"tests exceeded the disk quota after 3 attempt(s): `{PYTEST}`\n")
    assert reason.endswith(marker)
