"""The labelled corpus (tests/data/review/): each case's decision and rule ids, as observed today."""

from __future__ import annotations

from pathlib import Path

import pytest

from service_feature.models import Decision
from service_feature.reviewer.review import review
from tests.support.review_corpus import case_names, materialise

CASES = case_names()


def test_the_corpus_covers_the_issue() -> None:
    assert len(CASES) >= 30
    for prefix in ("clean-", "secret-", "security-", "policy-", "architecture-", "tests-"):
        assert sum(name.startswith(prefix) for name in CASES) >= 3, prefix


@pytest.mark.parametrize("name", CASES)
def test_case(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    case = materialise(name, tmp_path / name)
    if any(rule.startswith("semgrep.") for rule in case.observed_rules):
        request.getfixturevalue("semgrep_on_path")

    result = review(case.subject, case.policy)

    assert (result.decision, frozenset(finding.rule_id for finding in result.findings)) == (
        case.observed_decision,
        case.observed_rules,
    ), result.reasons
    assert all(reason.strip() for reason in result.reasons)
    if result.decision is Decision.approve:
        assert result.risk_score <= case.policy.max_risk_score
