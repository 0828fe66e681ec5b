"""Review of one patch: pure policy over the diff, the patched tree and the test result.

`review()` gathers findings from the scanners and turns them into a decision. It does no bus or database
I/O, so it is tested directly on patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service_feature.models import (
    Decision,
    Finding,
    FindingCategory,
    ReviewResult,
    Severity,
    Specification,
    TestResult,
)


@dataclass(frozen=True)
class ReviewPolicy:
    max_risk_score: int = 50
    max_critical_issues: int = 0
    block_on_secrets: bool = True


@dataclass(frozen=True)
class ReviewInput:
    specification: Specification
    diff: str
    tests: TestResult | None
    patched_tree: Path | None = None  # a checkout with the patch applied, for scanners that read files
    extra_findings: list[Finding] = field(default_factory=list)


def review(subject: ReviewInput, policy: ReviewPolicy) -> ReviewResult:
    if not subject.diff.strip():
        return ReviewResult(
            decision=Decision.reject, risk_score=0, reasons=["the patch is empty: nothing to deliver"]
        )
    findings = [*subject.extra_findings, *_test_findings(subject.tests)]
    criticals = sum(1 for finding in findings if finding.severity is Severity.critical)
    reasons: list[str] = []
    if criticals > policy.max_critical_issues:
        reasons.append(
            f"{criticals} critical finding(s), more than MAX_CRITICAL_ISSUES={policy.max_critical_issues}"
        )
    if reasons:
        return ReviewResult(decision=Decision.reject, risk_score=100, reasons=reasons, findings=findings)
    return ReviewResult(
        decision=Decision.approve, risk_score=0, reasons=["no blocking findings"], findings=findings
    )


def _test_findings(tests: TestResult | None) -> list[Finding]:
    if tests is None:
        return [_finding("tests.missing", Severity.critical, "the tests were not run")]
    if tests.succeeded:
        return []
    return [
        _finding(
            "tests.failing",
            Severity.critical,
            f"tests did not pass: {tests.failed} failed, {tests.errored} errored"
            + (", timed out" if tests.timed_out else ""),
        )
    ]


def _finding(rule_id: str, severity: Severity, message: str) -> Finding:
    return Finding(rule_id=rule_id, category=FindingCategory.tests, severity=severity, message=message)
