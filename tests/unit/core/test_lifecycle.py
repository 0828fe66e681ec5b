from itertools import pairwise

import pytest

from service_feature.lifecycle import TERMINAL, FeatureStatus, InvalidTransition, allowed_targets, transition

HAPPY_PATH = [
    FeatureStatus.queued,
    FeatureStatus.checking_out,
    FeatureStatus.preparing,
    FeatureStatus.generating,
    FeatureStatus.testing,
    FeatureStatus.reviewing,
    FeatureStatus.delivering,
    FeatureStatus.delivered,
]


def test_the_happy_path_is_a_chain_of_allowed_steps() -> None:
    for source, target in pairwise(HAPPY_PATH):
        step = transition(source, target)
        assert (step.source, step.target) == (source, target)
        assert step.event_type == f"status.{target.value}"


def test_failing_tests_go_back_to_generation() -> None:
    assert transition(FeatureStatus.testing, FeatureStatus.generating).target is FeatureStatus.generating


def test_the_agent_is_reached_only_through_preparation() -> None:
    assert allowed_targets(FeatureStatus.checking_out) == {
        FeatureStatus.preparing,
        FeatureStatus.failed,
        FeatureStatus.cancelled,
    }
    assert allowed_targets(FeatureStatus.preparing) == {
        FeatureStatus.generating,
        FeatureStatus.failed,
        FeatureStatus.cancelled,
    }


def test_human_approval_path() -> None:
    transition(FeatureStatus.reviewing, FeatureStatus.awaiting_approval)
    transition(FeatureStatus.awaiting_approval, FeatureStatus.delivering)
    transition(FeatureStatus.awaiting_approval, FeatureStatus.rejected)


@pytest.mark.parametrize("status", [s for s in FeatureStatus if not s.is_terminal])
def test_every_active_state_can_fail_or_be_cancelled(status: FeatureStatus) -> None:
    assert {FeatureStatus.failed, FeatureStatus.cancelled} <= allowed_targets(status)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_are_final(status: FeatureStatus) -> None:
    assert allowed_targets(status) == frozenset()
    with pytest.raises(InvalidTransition):
        transition(status, FeatureStatus.testing)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (FeatureStatus.queued, FeatureStatus.testing),
        (FeatureStatus.checking_out, FeatureStatus.generating),
        (FeatureStatus.preparing, FeatureStatus.testing),
        (FeatureStatus.generating, FeatureStatus.preparing),
        (FeatureStatus.testing, FeatureStatus.preparing),
        (FeatureStatus.generating, FeatureStatus.delivering),
        (FeatureStatus.reviewing, FeatureStatus.generating),
        (FeatureStatus.delivering, FeatureStatus.reviewing),
        (FeatureStatus.testing, FeatureStatus.delivered),
    ],
)
def test_skipping_or_going_backwards_is_refused(source: FeatureStatus, target: FeatureStatus) -> None:
    with pytest.raises(InvalidTransition, match=f"from {source.value} to {target.value}"):
        transition(source, target)
