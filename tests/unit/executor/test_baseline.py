"""Base vs patched classification, and `TestResult.succeeded` with and without a baseline."""

from __future__ import annotations

from typing import Any

import pytest

from service_feature.executor.baseline import CLASSES, MAX_NAMES, classify
from service_feature.models import TestCase, TestOutcome, TestResult

P, F, E, S = TestOutcome.passed, TestOutcome.failed, TestOutcome.errored, TestOutcome.skipped


def cases(**outcomes: TestOutcome) -> list[TestCase]:
    return [TestCase(name=name, outcome=outcome) for name, outcome in outcomes.items()]


def test_every_transition_has_its_class() -> None:
    base = cases(keeps=P, breaks=P, drops=P, fixes=F, stays=E, gone=F, skipped_now=P)
    patched = cases(keeps=P, breaks=E, fixes=P, stays=F, skipped_now=S, added=P, added_bad=F)

    assert classify(base, patched) == {
        "fixed": ["fixes"],
        "broken": ["breaks"],
        "still_failing": ["stays"],
        "still_passing": ["keeps"],
        "new_passing": ["added"],
        "new_failing": ["added_bad"],
        "removed": ["drops", "gone", "skipped_now"],
    }


def test_a_name_seen_twice_fails_if_any_occurrence_failed() -> None:
    base = cases(a=P)
    patched = [TestCase(name="a", outcome=P), TestCase(name="a", outcome=F)]

    assert classify(base, patched)["broken"] == ["a"]


def test_lists_are_capped_but_keep_every_class() -> None:
    many = [TestCase(name=f"t{i:05}", outcome=P) for i in range(MAX_NAMES + 5)]

    classes = classify(many, many)

    assert set(classes) == set(CLASSES)
    assert len(classes["still_passing"]) == MAX_NAMES


def result(**fields: Any) -> TestResult:
    return TestResult(command="pytest", sandbox="test", **{"exit_code": 1, "passed": 3, **fields})


def baseline(unattributed: int = 0) -> dict[str, Any]:
    return {"passed": 2, "failed": 1, "unattributed_failures": unattributed}


def test_pre_existing_failures_do_not_block() -> None:
    patch = result(failed=1, baseline=baseline(), classification={"still_failing": ["old"], "fixed": ["x"]})

    assert patch.succeeded
    assert not result(failed=1).succeeded  # the same run without a baseline: every failure counts


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"classification": {"broken": ["was_green"]}}, "broke a test that passed on the base"),
        ({"classification": {"new_failing": ["added"]}}, "its own new test fails"),
        ({"unattributed_failures": 1}, "a failure without a test name that the base did not have"),
        ({"timed_out": True}, "timed out"),
        ({"exit_code": None}, "killed"),
        ({"passed": 0}, "ran no passing test"),
    ],
)
def test_with_a_baseline_these_block(fields: dict[str, Any], why: str) -> None:
    patch = result(failed=1, baseline=baseline(), **fields)

    assert not patch.succeeded, why


def test_unattributed_failures_the_base_had_too_do_not_block() -> None:
    patch = result(errored=1, unattributed_failures=1, baseline=baseline(unattributed=1))

    assert patch.succeeded


def test_without_a_baseline_the_rule_is_unchanged() -> None:
    assert result(exit_code=0).succeeded
    assert not result(exit_code=0, errored=1).succeeded
    assert not result(exit_code=1).succeeded
