"""Review of one patch: pure policy over the diff, the patched tree and the test result.

`review()` parses the diff, runs every scanner (`scanners/`) and turns their findings into a decision
(`scoring.py`). It does no bus or database I/O, so it is tested directly on patches. The rules, weights and
settings are documented in docs/review.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from service_feature.diffs import DiffError, parse_diff
from service_feature.models import (
    Decision,
    Finding,
    FindingCategory,
    ReviewResult,
    Severity,
    Specification,
    TestResult,
)
from service_feature.reviewer.scanners import architecture, bandit_scan, secrets, semgrep_scan, tests_scan
from service_feature.reviewer.scanners import policy as policy_scan  # `policy` is review()'s parameter
from service_feature.reviewer.scoring import decide


@dataclass(frozen=True)
class ReviewPolicy:
    max_risk_score: int = 50  # MAX_RISK_SCORE
    max_critical_issues: int = 0  # MAX_CRITICAL_ISSUES
    block_on_secrets: bool = True  # BLOCK_ON_SECRETS
    max_changed_lines: int = 2000  # a larger diff is a policy finding


@dataclass(frozen=True)
class ReviewInput:
    specification: Specification
    diff: str  # `git diff --binary` from the base commit to the patched tree
    tests: TestResult | None
    patched_tree: Path | None = None  # a checkout with the patch applied, for scanners that read files
    extra_findings: list[Finding] = field(default_factory=list)
    base_tree: Path | None = (
        None  # a checkout of the base commit: secrets it has are not blamed, rules from it
    )
    base_test_result: TestResult | None = None  # the same tests on the base: failures there are not blamed


def review(subject: ReviewInput, policy: ReviewPolicy) -> ReviewResult:
    if not subject.diff.strip():
        return _rejected("the patch is empty: nothing to deliver")
    try:
        changes = parse_diff(subject.diff)
    except DiffError as error:
        return _rejected(f"the patch is not a unified diff the reviewer can read: {error}")
    if not changes:
        return _rejected("the patch changes no file")
    spec = subject.specification
    findings = [
        *subject.extra_findings,
        *secrets.scan(changes, subject.base_tree),
        *policy_scan.scan(changes, spec.target_files, policy.max_changed_lines),
        *tests_scan.scan(changes, spec, subject.tests, subject.base_test_result),
    ]
    notes: list[str] = []
    if subject.patched_tree is None:
        findings.append(
            Finding(
                rule_id="review.no-checkout",
                category=FindingCategory.quality,
                severity=Severity.high,
                message="no patched checkout: bandit, semgrep and the architecture rules did not run",
            )
        )
    else:
        findings += bandit_scan.scan(changes, subject.patched_tree)
        findings += architecture.scan(changes, subject.patched_tree, subject.base_tree)
        if semgrep_scan.executable() is None:
            notes.append("semgrep is not installed, so its rules were not run")
        else:
            findings += semgrep_scan.scan(changes, subject.patched_tree)
    return decide(findings, policy, notes)


def _rejected(reason: str) -> ReviewResult:
    return ReviewResult(decision=Decision.reject, risk_score=0, reasons=[reason])
