from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from service_feature.models import Decision, Finding, FindingCategory, Language, Severity, Specification
from service_feature.reviewer.review import ReviewInput, ReviewPolicy, review
from service_feature.reviewer.scanners import semgrep_scan
from tests.support.review_corpus import Files, MakePatch, run_result

SPEC = Specification(
    title="Add a discount",
    requirements=["total() takes a discount", "Add a test for it"],
    target_files=["app/pricing.py"],
    language=Language.python,
)
BASE = {
    "app/__init__.py": "",
    "app/pricing.py": "def total(prices: list[float]) -> float:\n    return sum(prices)\n",
    "tests/test_pricing.py": (
        "from app.pricing import total\n\n\ndef test_total() -> None:\n    assert total([1.0]) == 1.0\n"
    ),
}
CLEAN = {
    "app/pricing.py": (
        "def total(prices: list[float], discount: float = 0.0) -> float:\n"
        "    return sum(prices) * (1.0 - discount)\n"
    ),
    "tests/test_pricing.py": BASE["tests/test_pricing.py"]
    + "\n\ndef test_discount() -> None:\n    assert total([10.0], discount=0.5) == 5.0\n",
}


def subject(make_patch: MakePatch, patch: Files, **fields: Any) -> ReviewInput:
    checkouts = make_patch(BASE, patch)
    clean = ReviewInput(
        SPEC, checkouts.diff, run_result({}), patched_tree=checkouts.patched, base_tree=checkouts.base
    )
    return dataclasses.replace(clean, **fields)


def test_a_clean_patch_is_approved(make_patch: MakePatch) -> None:
    result = review(subject(make_patch, CLEAN), ReviewPolicy())

    assert (result.decision, result.risk_score) == (Decision.approve, 0)
    assert [finding.rule_id for finding in result.findings] == []
    assert result.reasons[0] == "risk score 0 is within MAX_RISK_SCORE=50"


def test_the_positional_signature_the_service_uses_still_works(make_patch: MakePatch) -> None:
    checkouts = make_patch(BASE, CLEAN)

    result = review(
        ReviewInput(SPEC, checkouts.diff, run_result({}), patched_tree=checkouts.patched), ReviewPolicy()
    )

    assert result.decision is Decision.approve


@pytest.mark.parametrize("diff", ["", "  \n"])
def test_an_empty_patch_is_rejected(diff: str) -> None:
    result = review(ReviewInput(SPEC, diff, run_result({})), ReviewPolicy())

    assert result.decision is Decision.reject
    assert result.reasons == ["the patch is empty: nothing to deliver"]


@pytest.mark.parametrize(
    "diff", ["not a diff at all\n", "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n"]
)
def test_an_unreadable_patch_is_rejected(diff: str) -> None:
    result = review(ReviewInput(SPEC, diff, run_result({})), ReviewPolicy())

    assert result.decision is Decision.reject
    assert "patch" in result.reasons[0]


def test_without_a_checkout_the_review_cannot_approve(make_patch: MakePatch) -> None:
    result = review(subject(make_patch, CLEAN, patched_tree=None), ReviewPolicy())

    assert result.decision is Decision.needs_human
    assert [finding.rule_id for finding in result.findings] == ["review.no-checkout"]


def test_extra_findings_count(make_patch: MakePatch) -> None:
    extra = Finding(rule_id="worker.x", category=FindingCategory.quality, severity=Severity.high, message="m")

    result = review(subject(make_patch, CLEAN, extra_findings=[extra]), ReviewPolicy())

    assert result.decision is Decision.needs_human
    assert result.findings == [extra]


def test_a_missing_semgrep_is_noted(make_patch: MakePatch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semgrep_scan, "executable", lambda: None)

    result = review(subject(make_patch, CLEAN), ReviewPolicy())

    assert result.reasons[-1] == "semgrep is not installed, so its rules were not run"


def test_findings_of_every_scanner_reach_the_decision(make_patch: MakePatch) -> None:
    patch = {
        **CLEAN,
        "app/pricing.py": CLEAN["app/pricing.py"] + "import pickle\nload = pickle.loads\n",
        ".github/workflows/ci.yml": "on: push\n",
        "app/keys.py": 'TOKEN = "ghp_aQhm22ujFljgcZ0O2e94RIiX5dI6QRqgAh33"\n',
    }
    failing = run_result({"failed": 1, "failures": [{"name": "t::x", "outcome": "failed"}]})

    result = review(subject(make_patch, patch, tests=failing), ReviewPolicy())

    assert result.decision is Decision.reject
    assert {finding.category for finding in result.findings} >= {
        FindingCategory.secrets,
        FindingCategory.security,
        FindingCategory.policy,
        FindingCategory.tests,
    }
    assert result.reasons[0].startswith("the tests fail")
    assert any("credential" in reason for reason in result.reasons)
