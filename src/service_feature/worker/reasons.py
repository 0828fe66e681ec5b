"""What a feature's record says about its test runs, in words a user can act on.

`preparation_summary` is what the feature shows of the executor's setup and baseline on the base commit.
The reasons say why a feature failed: its base cannot be tested (`untestable_reason`, before any model
call), or its tests never passed (`never_passed_reason`), told apart as a failed dependency setup, a suite
that cannot run at all, or named failing tests; each names the command and ends with the output's last
lines, because "0 failed, 1 errored" alone tells nobody what to fix.
"""

from __future__ import annotations

from typing import Any

from service_feature.models import TestOutcome, TestResult

_TAIL_LINES = 15
_TAIL_CHARS = 2000
_LOG_TAIL_LINES = 40
_LOG_TAIL_CHARS = 4000
_NAMES_SHOWN = 5
# The runner's untestable reasons start with the step that failed; anything else (a toolchain missing on
# the executor) is about the environment.
_STEPS = ("environment:", "baseline:")
_BASELINE_FIELDS = (
    "commit",
    "passed",
    "failed",
    "errored",
    "skipped",
    "exit_code",
    "timed_out",
    "duration_seconds",
    "cached",
)
_SETUP_PREFIX = "dependency setup failed: "


def output_tail(text: str, *, lines: int = _TAIL_LINES, chars: int = _TAIL_CHARS) -> str:
    """The last non-blank lines of a command's output, bounded in lines and characters."""
    kept = [line.rstrip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-chars:]


def _with_tail(headline: str, output: str) -> str:
    tail = output_tail(output)
    return f"{headline}\n{tail}" if tail else headline


# -- preparation ---------------------------------------------------------------------------------------


def preparation_summary(result: TestResult) -> dict[str, Any]:
    """The preparation as the feature shows it: setup outcome and time, whether the environment came from
    the cache, the baseline's counts, and on failure why and the log's tail."""
    environment = result.environment or {}
    baseline = result.baseline
    summary: dict[str, Any] = {
        "testable": result.untestable is None,
        "setup": setup_outcome(result),
        "setup_seconds": float(environment.get("setup_seconds", 0.0)),
        "environment_cached": bool(environment.get("cached")),
        "baseline": None if baseline is None else {key: baseline.get(key) for key in _BASELINE_FIELDS},
        "command": result.command,
        "sandbox": result.sandbox,
    }
    if result.untestable:
        summary["untestable"] = result.untestable.partition("\n")[0]
        summary["log_tail"] = output_tail(result.output_tail, lines=_LOG_TAIL_LINES, chars=_LOG_TAIL_CHARS)
    return summary


def setup_outcome(result: TestResult) -> str:
    """`failed` (no baseline could run), `cached`, `installed`, or `not needed` (nothing to install)."""
    if result.baseline is None and result.untestable:
        return "failed"
    environment = result.environment or {}
    if not environment.get("installed"):
        return "not needed"
    return "cached" if environment.get("cached") else "installed"


def untestable_reason(result: TestResult) -> str:
    """Why the feature fails before the agent is called: the step, the command, the output's last lines."""
    headline, _, output = (result.untestable or "the base commit cannot be tested").partition("\n")
    if not headline.startswith(_STEPS):
        headline = f"environment: {headline}"
    return _with_tail(headline, output)


# -- tests that never passed ---------------------------------------------------------------------------


def never_passed_reason(result: TestResult, attempts: int) -> str:
    """Why the last attempt's tests still do not pass."""
    after = f"after {attempts} attempt(s)"
    if result.command == "setup":
        changed = ", ".join(result.dependency_files_changed)
        because = f" (the patch changed {changed})" if changed else ""
        detail = result.output_tail.removeprefix(_SETUP_PREFIX)
        return _with_tail(f"dependency setup failed on the patched run {after}{because}", detail)
    if result.disk_quota_exceeded:
        return _with_tail(f"tests exceeded the disk quota {after}: `{result.command}`", result.output_tail)
    if result.timed_out:
        return _with_tail(f"tests timed out {after}: `{result.command}`", result.output_tail)
    if names := failing_tests(result):
        return f"tests still failing {after}: {_failure_counts(result)}: {_listed(names)}"
    if result.exit_code == 0:
        return f"no test passed {after}: `{result.command}` ran none"
    return _with_tail(
        f"the test suite could not run {after}: `{result.command}` exited {result.exit_code} "
        "without naming a failing test (a collection, import or build error?)",
        result.output_tail,
    )


def failing_tests(result: TestResult) -> list[str]:
    """The tests to blame: with a baseline, those the patch broke and its new tests that fail (failures
    the base already had are not the patch's); without one, every failed or errored test."""
    if result.baseline is not None:
        return [*result.classification.get("broken", []), *result.classification.get("new_failing", [])]
    failing = (TestOutcome.failed, TestOutcome.errored)
    return [case.name for case in result.failures if case.outcome in failing]


def _failure_counts(result: TestResult) -> str:
    if result.baseline is None:
        return f"{result.failed} failed, {result.errored} errored"
    broken = len(result.classification.get("broken", []))
    new_failing = len(result.classification.get("new_failing", []))
    parts = [
        f"{broken} broken by the patch" if broken else "",
        f"{new_failing} new failing" if new_failing else "",
    ]
    return ", ".join(part for part in parts if part)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    hidden = len(names) - _NAMES_SHOWN
    return f"{shown}, … and {hidden} more" if hidden > 0 else shown
