import json

import pytest
from pydantic import ValidationError

from service_feature.errors import PoisonMessage
from service_feature.events import (
    Envelope,
    FeatureRequested,
    StatusChanged,
    TestsCompleted,
    TestsRequested,
    decode,
)
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
    envelope = Envelope.of("abc", TestsRequested(attempt=2))
    assert decode(envelope.to_bytes()) == envelope


def test_the_wire_keeps_the_type_beside_a_plain_payload() -> None:
    result = TestResult(command="pytest", sandbox="bwrap", exit_code=0, passed=1)
    wire = json.loads(Envelope.of("abc", TestsCompleted(attempt=1, result=result)).to_bytes())
    assert wire["type"] == "tests.completed"
    assert wire["payload"] == {"attempt": 1, "result": result.model_dump(mode="json")}


def test_status_changes_carry_their_details() -> None:
    payload = {"status": "failed", "from": "testing", "attempt": 2}
    data = json.dumps({"type": "status.changed", "execution_id": "a", "payload": payload}).encode()
    status = decode(data).payload
    assert isinstance(status, StatusChanged)
    assert (status.status, status.source, status.detail) == ("failed", "testing", {"attempt": 2})
    assert json.loads(Envelope.of("a", status).to_bytes())["payload"]["from"] == "testing"


def test_a_bare_request_on_the_bus_is_wrapped_with_a_stable_event_id() -> None:
    envelope = decode(json.dumps(SEED_EXAMPLE).encode())
    assert envelope.type == "feature.requested"
    assert envelope.event_id == "request-demo000000001"
    assert isinstance(envelope.payload, FeatureRequested)
    assert envelope.payload.request.specification.title == "Add greeting function"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "invalid event"),
        (b'{"version": 2, "type": "x", "execution_id": "a"}', "version"),
        (b'{"type": "x"}', "execution_id"),
        (b'{"type": "tests.requested", "execution_id": "a", "payload": {"attempt": 0}}', "attempt"),
        (b'{"type": "tests.requested", "execution_id": "a", "payload": {"attempt": "two"}}', "attempt"),
        (b'{"type": "no.such.event", "execution_id": "a", "payload": {}}', "no.such.event"),
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
