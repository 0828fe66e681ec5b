"""The labelled corpus (tests/data/review/): each case's decision and rule ids, as observed today."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from service_feature.models import Decision
from service_feature.reviewer.review import review
from tests.support.review_corpus import CORPUS_DIR, case_names, materialise

CASES = case_names()


def test_the_corpus_covers_the_issue() -> None:
    assert len(CASES) >= 150
    for prefix in ("clean-", "secret-", "security-", "policy-", "architecture-", "tests-"):
        assert sum(name.startswith(prefix) for name in CASES) >= 3, prefix


def test_a_third_to_a_half_is_held_out_and_nearly_half_is_clean() -> None:
    raw = {name: yaml.safe_load((CORPUS_DIR / f"{name}.yml").read_text(encoding="utf-8")) for name in CASES}
    held_out = [name for name, case in raw.items() if case.get("held_out")]
    clean = [name for name, case in raw.items() if case["expected"]["decision"] == "approve"]
    # Three batches written blind: the first (62 cases) and `heldout2-` have been read since; `heldout3-` had
    # not been when it was measured (docs/review.md).
    blind = [name for name in held_out if name.startswith("heldout3-")]

    assert 0.3 <= len(held_out) / len(CASES) <= 0.6
    assert len(blind) >= 40
    assert 0.4 <= len(clean) / len(CASES) <= 0.5
    assert all(raw[name].get("source") for name in held_out)  # each says where its shape comes from


@pytest.mark.parametrize("name", CASES)
def test_case(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    case = materialise(name, tmp_path / name)
    if case.class_labels or any(rule.startswith("semgrep.") for rule in case.observed_rules):
        request.getfixturevalue("semgrep_on_path")

    result = review(case.subject, case.policy)

    assert (result.decision, case.found(result.findings)) == (
        case.observed_decision,
        case.observed_rules,
    ), result.reasons
    assert all(reason.strip() for reason in result.reasons)
    if result.decision is Decision.approve:
        assert result.risk_score <= case.policy.max_risk_score
