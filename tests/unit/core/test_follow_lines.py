"""What `submit --wait` and `demo` print about a feature's preparation and its events."""

from service_feature.follow import _event_line, describe_preparation


def test_a_prepared_base_shows_setup_and_baseline() -> None:
    preparation = {
        "testable": True,
        "setup": "installed",
        "setup_seconds": 12.34,
        "baseline": {"passed": 3, "failed": 1, "errored": 0, "cached": True},
    }
    assert describe_preparation(preparation) == (
        "setup installed (12.3 s); base: 3 passed, 1 failed, 0 errored (cached)"
    )


def test_an_untestable_base_says_why() -> None:
    preparation = {
        "testable": False,
        "setup": "failed",
        "setup_seconds": 0.0,
        "baseline": None,
        "untestable": "environment: dependency setup failed: `pip install .` (exit 1)",
    }
    assert describe_preparation(preparation) == (
        "setup failed (0.0 s); cannot be tested: "
        "environment: dependency setup failed: `pip install .` (exit 1)"
    )


def test_the_preparation_event_line() -> None:
    event = {
        "type": "environment.completed",
        "status": "preparing",
        "created_at": "2026-12-03T08:00:00.123456+00:00",
        "detail": {"passed": 0, "failed": 0, "untestable": "baseline: `pytest` cannot run"},
    }
    assert _event_line(event).endswith("environment.completed — base: 0 passed, 0 failed (cannot be tested)")
