"""What a pull request says about a feature: its title, labels and body."""

from typing import Any

import pytest

from service_feature.models import FeatureRequest, TestResult
from service_feature.worker.pull_requests import (
    PullRequestFacts,
    pull_request_body,
    pull_request_labels,
    risk_level,
)

REQUEST = FeatureRequest.model_validate(
    {
        "execution_id": "pr1",
        "repository_url": "https://example.com/o/r.git",
        "specification": {
            "title": "Add a health endpoint",
            "description": "Expose /health.\n\n## Not a heading of ours",
            "requirements": ["Return 200", "JSON body"],
            "target_files": ["app/health.py"],
            "language": "python",
        },
    }
)
TESTS = TestResult(
    command="pytest -q",
    sandbox="bwrap",
    exit_code=0,
    passed=12,
    failed=1,
    duration_seconds=2.5,
    baseline={"passed": 10, "failed": 2, "unattributed_failures": 0},
    classification={
        "fixed": ["tests/test_a.py::test_fixed"],
        "still_failing": ["tests/test_b.py::test_old|pipe"],
        "still_passing": ["t1", "t2", "t3"],
        "new_passing": ["tests/test_health.py::test_ok"],
    },
)
REVIEW: dict[str, Any] = {
    "decision": "needs_human",
    "risk_score": 55,
    "reasons": ["risk score 55 exceeds MAX_RISK_SCORE=50"],
    "findings": [
        {
            "rule_id": "python.subprocess-shell",
            "category": "security",
            "severity": "high",
            "message": "shell=True | with input",
            "file": "app/health.py",
            "line": 7,
        }
    ],
}


def _facts(**changes: Any) -> PullRequestFacts:
    facts: dict[str, Any] = {
        "request": REQUEST,
        "summary": "Added app/health.py and a test.",
        "tests": TESTS,
        "review": REVIEW,
        "cost_usd": 0.0123,
        "tokens": 4567,
        "models": ("claude-x",),
        "transcript_url": "https://sf.example/features/pr1",
        "held": False,
    }
    return PullRequestFacts(**{**facts, **changes})


def test_the_body_carries_spec_summary_tests_review_and_cost() -> None:
    body = pull_request_body(_facts())
    assert "> Expose /health." in body
    assert "> ## Not a heading of ours" in body  # the requester's markdown is quoted, not ours
    assert "- Return 200" in body
    assert "`app/health.py`" in body
    assert "> Added app/health.py and a test." in body
    assert "12 passed, 1 failed" in body
    assert "| fixed | `tests/test_a.py::test_fixed` |" in body
    assert "| still failing (failed before the change too) | `tests/test_b.py::test_old\\|pipe` |" in body
    assert "| new, passing | `tests/test_health.py::test_ok` |" in body
    assert "| still passing | 3 |" in body
    assert "risk score 55/100 (high)" in body
    assert "| high | `python.subprocess-shell` | app/health.py:7 | shell=True \\| with input |" in body
    assert "`claude-x` · 4,567 tokens · $0.0123 · [transcript](https://sf.example/features/pr1)" in body
    assert "Execution-Id: `pr1`" in body
    assert "held this change" not in body


def test_a_held_feature_says_how_a_person_decides() -> None:
    body = pull_request_body(_facts(held=True))
    assert "The reviewer held this change for a person" in body
    assert "service-feature approve pr1" in body


def test_without_tests_or_review_the_body_says_so() -> None:
    body = pull_request_body(_facts(tests=None, review=None, transcript_url=None, models=()))
    assert "No test run is on record." in body
    assert "## Review" not in body
    assert "Model: none" in body
    assert "transcript" not in body


@pytest.mark.parametrize(
    ("score", "level"),
    [(0, "low"), (24, "low"), (25, "medium"), (50, "high"), (74, "high"), (75, "critical")],
)
def test_risk_levels(score: int, level: str) -> None:
    assert risk_level(score) == level


def test_labels_name_the_platform_and_the_risk() -> None:
    assert pull_request_labels(REVIEW) == ("service-feature", "risk:high")
    assert pull_request_labels(None) == ("service-feature",)
