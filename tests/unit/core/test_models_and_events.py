import json

import pytest
from pydantic import ValidationError

from service_feature.events import Envelope, PoisonMessage, decode
from service_feature.models import FeatureRequest, TestResult

SEED_EXAMPLE = {
    "execution_id": "demo000000001",
    "repository_url": "https://github.com/example/repo.git",
    "branch": "main",
    "specification": {
        "title": "Add greeting function",
        "description": "Create a greeting function",
        "requirements": ["Accept name parameter", "Return 'Hello, {name}!'", "Add unit tests"],
        "target_files": ["src/greeting.go"],
        "language": "go",
    },
}


def test_the_seed_example_is_a_valid_request() -> None:
    request = FeatureRequest.model_validate(SEED_EXAMPLE)
    assert request.execution_id == "demo000000001"
    assert request.test_command is None


def test_execution_id_is_generated_when_absent() -> None:
    body = {k: v for k, v in SEED_EXAMPLE.items() if k != "execution_id"}
    first, second = FeatureRequest.model_validate(body), FeatureRequest.model_validate(body)
    assert first.execution_id != second.execution_id
    assert len(first.execution_id) <= 64


@pytest.mark.parametrize("bad", ["", "a" * 65, "has space", "semi;colon", "slash/no", "ünï"])
def test_execution_id_pattern(bad: str) -> None:
    with pytest.raises(ValidationError, match="execution_id"):
        FeatureRequest.model_validate({**SEED_EXAMPLE, "execution_id": bad})


def test_unknown_fields_are_rejected_at_every_level() -> None:
    with pytest.raises(ValidationError, match="colour"):
        FeatureRequest.model_validate({**SEED_EXAMPLE, "colour": "blue"})
    spec = {**SEED_EXAMPLE["specification"], "priority": 1}  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="priority"):
        FeatureRequest.model_validate({**SEED_EXAMPLE, "specification": spec})


def test_unknown_language_is_rejected() -> None:
    spec = {**SEED_EXAMPLE["specification"], "language": "cobol"}  # type: ignore[dict-item]
    with pytest.raises(ValidationError, match="language"):
        FeatureRequest.model_validate({**SEED_EXAMPLE, "specification": spec})


def test_envelope_round_trip() -> None:
    envelope = Envelope(type="tests.requested", execution_id="abc", payload={"attempt": 2})
    assert decode(envelope.to_bytes()) == envelope


def test_a_bare_request_on_the_bus_is_wrapped_with_a_stable_event_id() -> None:
    envelope = decode(json.dumps(SEED_EXAMPLE).encode())
    assert envelope.type == "feature.requested"
    assert envelope.event_id == "request-demo000000001"
    assert envelope.payload["request"]["specification"]["title"] == "Add greeting function"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "invalid event"),
        (b'{"version": 2, "type": "x", "execution_id": "a"}', "version"),
        (b'{"type": "x"}', "execution_id"),
    ],
)
def test_poison_messages_are_named(data: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        decode(data)


def test_test_result_success_needs_passing_tests() -> None:
    assert TestResult(command="pytest", sandbox="x", exit_code=0, passed=2).succeeded
    assert not TestResult(command="pytest", sandbox="x", exit_code=0, passed=0).succeeded
    assert not TestResult(command="pytest", sandbox="x", exit_code=1, passed=2, failed=1).succeeded
    assert not TestResult(command="pytest", sandbox="x", exit_code=0, passed=2, timed_out=True).succeeded
