"""Tests: did the executor's run pass, and does the patch bring the tests its specification asks for.

A failing run is critical and a veto (`FAILING`), unless every failing test is named and also fails on the
base commit (`base_tests`): those failures are the repository's, not the patch's, and are reported as info.
A run without test names cannot be compared, so it counts as failing. A run that did not happen (`tests` is
None) is high: nothing proves the patch works, but nothing proves it broken either.

"The requirements ask for tests" means a requirement mentions a test (`test`, `tests`, `tested`, `testing`);
the patch then has to add lines to a test file or define a test (high otherwise).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from service_feature.diffs import FileChange
from service_feature.models import Finding, FindingCategory, Severity, Specification, TestOutcome, TestResult
from service_feature.reviewer.scanners.paths import is_test_path

FAILING = "tests.failing"

_ASKS_FOR_TESTS = re.compile(r"\btest(?:s|ed|ing)?\b", re.IGNORECASE)
_TEST_DEFINITIONS = (
    re.compile(r"^\s*(?:async\s+)?def\s+(test\w*)\s*\("),  # Python
    re.compile(r"^\s*func\s+((?:Test|Benchmark|Fuzz)\w*)\s*\("),  # Go
    re.compile(r"""^\s*(?:it|test)(?:\.\w+)?\s*\(\s*(['"`].+?['"`])"""),  # JavaScript, TypeScript
    re.compile(r"^\s*(#\[(?:tokio::)?test\])"),  # Rust
)
_SHOWN_NAMES = 5


def defined_tests(text: str) -> Iterator[str]:
    """The tests a source line defines (a test function, an `it(...)` block, a Rust `#[test]`)."""
    for pattern in _TEST_DEFINITIONS:
        match = pattern.match(text)
        if match:
            yield match.group(1)


def scan(
    changes: Sequence[FileChange],
    specification: Specification,
    tests: TestResult | None,
    base_tests: TestResult | None = None,
) -> list[Finding]:
    findings = _run_findings(tests, base_tests)
    if any(_ASKS_FOR_TESTS.search(requirement) for requirement in specification.requirements) and not any(
        _adds_tests(change) for change in changes
    ):
        findings.append(
            _finding(
                "tests.none-added", Severity.high, "the requirements ask for tests, and the patch adds none"
            )
        )
    return findings


def _adds_tests(change: FileChange) -> bool:
    if not change.exists_after or not change.added:
        return False
    return is_test_path(change.path) or any(next(defined_tests(line.text), None) for line in change.added)


def _run_findings(tests: TestResult | None, base_tests: TestResult | None) -> list[Finding]:
    if tests is None:
        return [
            _finding(
                "tests.not-run", Severity.high, "the tests were not run, so nothing shows the patch works"
            )
        ]
    if tests.succeeded:
        return []
    failing = _failing_names(tests)
    named_all = len(failing) >= tests.failed + tests.errored > 0 and not tests.timed_out
    preexisting = failing & _failing_names(base_tests) if base_tests is not None else set()
    if named_all and failing == preexisting:
        return [
            _finding(
                "tests.preexisting-failure",
                Severity.info,
                f"{len(failing)} test(s) fail on the base commit too, so not by the patch: {_names(failing)}",
            )
        ]
    new = failing - preexisting
    detail = f"{tests.failed} failed, {tests.errored} errored" + (", timed out" if tests.timed_out else "")
    if tests.exit_code not in (0, None) and not (tests.failed or tests.errored):
        detail += f", exit code {tests.exit_code}"
    if tests.passed == 0:
        detail += ", none passed"
    if new:
        detail += f": {_names(new)}"
    if preexisting:
        detail += f" ({len(preexisting)} more fail on the base too)"
    return [_finding(FAILING, Severity.critical, f"the tests do not pass with the patch ({detail})")]


def _failing_names(result: TestResult) -> set[str]:
    return {
        case.name for case in result.failures if case.outcome in (TestOutcome.failed, TestOutcome.errored)
    }


def _names(names: set[str]) -> str:
    shown = sorted(names)[:_SHOWN_NAMES]
    return ", ".join(shown) + (f" and {len(names) - len(shown)} more" if len(names) > len(shown) else "")


def _finding(rule_id: str, severity: Severity, message: str) -> Finding:
    return Finding(rule_id=rule_id, category=FindingCategory.tests, severity=severity, message=message)
