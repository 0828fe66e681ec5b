from __future__ import annotations

import pytest

from service_feature.models import Decision, Finding, FindingCategory, Severity
from service_feature.reviewer.review import ReviewPolicy
from service_feature.reviewer.scanners.tests_scan import FAILING
from service_feature.reviewer.scoring import SEVERITY_WEIGHTS, decide, risk_score

DEFAULT = ReviewPolicy()


def finding(
    severity: Severity, category: FindingCategory = FindingCategory.policy, rule_id: str = "policy.x"
) -> Finding:
    return Finding(rule_id=rule_id, category=category, severity=severity, message="m", file="a.py", line=3)


def test_weights_are_ordered_and_info_is_free() -> None:
    ordered = [SEVERITY_WEIGHTS[s] for s in (Severity.critical, Severity.high, Severity.medium, Severity.low)]

    assert ordered == sorted(ordered, reverse=True)
    assert SEVERITY_WEIGHTS[Severity.info] == 0


@pytest.mark.parametrize(
    ("severities", "score"),
    [
        ([], 0),
        ([Severity.info] * 5, 0),
        ([Severity.low], 5),
        ([Severity.medium, Severity.medium, Severity.low], 45),
        ([Severity.high], 60),
        ([Severity.high, Severity.high], 100),
        ([Severity.critical, Severity.critical], 100),
    ],
)
def test_the_score_adds_weights_and_caps_at_100(severities: list[Severity], score: int) -> None:
    assert risk_score([finding(severity) for severity in severities]) == score


def test_a_clean_patch_is_approved_with_a_reason() -> None:
    result = decide([], DEFAULT)

    assert (result.decision, result.risk_score) == (Decision.approve, 0)
    assert result.reasons == ["risk score 0 is within MAX_RISK_SCORE=50"]


def test_a_score_at_the_limit_is_approved_and_above_it_needs_a_human() -> None:
    at_limit = [
        finding(Severity.medium),
        finding(Severity.medium),
        finding(Severity.low),
        finding(Severity.low),
    ]
    policy = ReviewPolicy(max_risk_score=50)

    assert decide(at_limit, policy).decision is Decision.approve
    assert decide([*at_limit, finding(Severity.low)], policy).decision is Decision.needs_human


def test_failing_tests_reject_whatever_the_other_settings() -> None:
    lenient = ReviewPolicy(max_risk_score=100, max_critical_issues=10, block_on_secrets=False)

    result = decide([finding(Severity.critical, FindingCategory.tests, FAILING)], lenient)

    assert result.decision is Decision.reject
    assert result.reasons[0].startswith("the tests fail")


def test_a_known_credential_rejects_only_when_block_on_secrets() -> None:
    secret = finding(Severity.critical, FindingCategory.secrets, "secrets.aws-access-token")
    allow_criticals = ReviewPolicy(max_critical_issues=1)

    assert decide([secret], allow_criticals).decision is Decision.reject
    relaxed = decide([secret], ReviewPolicy(max_critical_issues=1, block_on_secrets=False))
    assert relaxed.decision is Decision.needs_human  # its weight still exceeds MAX_RISK_SCORE


def test_a_heuristic_secret_hit_needs_a_human_whatever_the_score() -> None:
    hit = finding(Severity.high, FindingCategory.secrets, "secrets.base64-high-entropy-string")

    assert decide([hit], ReviewPolicy(max_risk_score=100)).decision is Decision.needs_human
    assert (
        decide([hit], ReviewPolicy(max_risk_score=100, block_on_secrets=False)).decision is Decision.approve
    )


def test_critical_findings_over_the_limit_reject() -> None:
    criticals = [finding(Severity.critical, FindingCategory.security, "bandit.B602")] * 2

    assert decide(criticals, ReviewPolicy(max_critical_issues=1)).decision is Decision.reject
    assert decide(criticals, ReviewPolicy(max_critical_issues=2)).decision is Decision.needs_human
    assert (
        decide(criticals, ReviewPolicy(max_critical_issues=2, max_risk_score=100)).decision
        is Decision.approve
    )


def test_reasons_name_the_weightiest_findings_then_the_notes() -> None:
    findings = [finding(Severity.low)] * 3 + [finding(Severity.high, rule_id="policy.ci-config")] * 5
    findings.append(finding(Severity.info, rule_id="tests.preexisting-failure"))

    result = decide(findings, DEFAULT, notes=["semgrep is not installed"])

    assert result.reasons[0] == "risk score 100 exceeds MAX_RISK_SCORE=50"
    assert result.reasons[1] == "high policy.ci-config at a.py:3: m"
    assert result.reasons[-2:] == ["and 3 more finding(s)", "semgrep is not installed"]
    assert len(result.findings) == 9
