"""From findings to a risk score and a decision.

Published gates (SonarQube's "no new blocker", Snyk's `--severity-threshold`) are thresholds, not formulas;
the additive score here is this project's choice:

    risk_score = min(100, sum(SEVERITY_WEIGHTS[finding.severity] for finding in findings))

with critical 100, high 60, medium 20, low 5, info 0. The weights are set against the default
MAX_RISK_SCORE=50: one high finding, or three medium ones, is more than a patch may carry unseen; lows add up
slowly (ten of them still pass) and infos are notes.

Decision, in order:
1. reject when a veto holds: the tests fail (with the patch, not already on the base); BLOCK_ON_SECRETS and a
   confirmed credential (a critical secrets finding: a known format in code or configuration) is added; more
   critical findings than MAX_CRITICAL_ISSUES.
2. needs_human when BLOCK_ON_SECRETS and any other secret finding is added (a heuristic hit, or a known
   format in documentation, examples or test data): a person tells a credential from a sample, whatever the
   score. The reason names the first such finding's message, which says why it is uncertain.

A reject needs a confirmed, high-confidence finding; everything uncertain goes to a person.
3. approve when risk_score <= MAX_RISK_SCORE, needs_human otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from service_feature.models import Decision, Finding, FindingCategory, ReviewResult, Severity
from service_feature.reviewer.scanners.tests_scan import FAILING

if TYPE_CHECKING:
    from service_feature.reviewer.review import ReviewPolicy

SEVERITY_WEIGHTS: dict[Severity, int] = {
    Severity.critical: 100,
    Severity.high: 60,
    Severity.medium: 20,
    Severity.low: 5,
    Severity.info: 0,
}
MAX_SCORE = 100
_LISTED = 5  # findings named in the reasons; the rest are in `findings`


def risk_score(findings: Sequence[Finding]) -> int:
    return min(MAX_SCORE, sum(SEVERITY_WEIGHTS[finding.severity] for finding in findings))


def decide(findings: Sequence[Finding], policy: ReviewPolicy, notes: Sequence[str] = ()) -> ReviewResult:
    """The decision and its reasons: the deciding sentences, then the weightiest findings, then notes."""
    score = risk_score(findings)
    secrets = [finding for finding in findings if finding.category is FindingCategory.secrets]
    criticals = [finding for finding in findings if finding.severity is Severity.critical]
    vetoes = [f"the tests fail: {finding.message}" for finding in findings if finding.rule_id == FAILING]
    known_secrets = [finding for finding in secrets if finding.severity is Severity.critical]
    if policy.block_on_secrets and known_secrets:
        vetoes.append(f"a credential is added ({_places(known_secrets)}) and BLOCK_ON_SECRETS is on")
    if len(criticals) > policy.max_critical_issues:
        vetoes.append(
            f"{len(criticals)} critical finding(s), over MAX_CRITICAL_ISSUES={policy.max_critical_issues}"
        )
    if vetoes:
        decision, reasons = Decision.reject, vetoes
    elif policy.block_on_secrets and secrets:
        decision = Decision.needs_human
        reasons = [
            f"a string that may be a secret is added ({_places(secrets)}); BLOCK_ON_SECRETS holds it for a "
            f"person: {secrets[0].message}"
        ]
    elif score > policy.max_risk_score:
        decision, reasons = (
            Decision.needs_human,
            [f"risk score {score} exceeds MAX_RISK_SCORE={policy.max_risk_score}"],
        )
    else:
        decision, reasons = (
            Decision.approve,
            [f"risk score {score} is within MAX_RISK_SCORE={policy.max_risk_score}"],
        )
    weighty = sorted(
        (finding for finding in findings if SEVERITY_WEIGHTS[finding.severity]),
        key=lambda finding: -SEVERITY_WEIGHTS[finding.severity],
    )
    reasons += [_sentence(finding) for finding in weighty[:_LISTED]]
    if len(weighty) > _LISTED:
        reasons.append(f"and {len(weighty) - _LISTED} more finding(s)")
    return ReviewResult(
        decision=decision, risk_score=score, reasons=[*reasons, *notes], findings=list(findings)
    )


def _sentence(finding: Finding) -> str:
    return f"{finding.severity} {finding.rule_id}{_place(finding)}: {finding.message}"


def _places(findings: Sequence[Finding]) -> str:
    return ", ".join(sorted({_place(finding).removeprefix(" at ") for finding in findings}))


def _place(finding: Finding) -> str:
    if finding.file is None:
        return ""
    return f" at {finding.file}" + (f":{finding.line}" if finding.line is not None else "")
