"""Property-based testing of the HTTP API against its own OpenAPI schema (schemathesis): whatever a client
sends, the platform answers without a server error, with a body that matches the schema, and with auth
enforced where the schema says it is. The platform runs as `service-feature up` in a subprocess, so
schemathesis's synchronous client can call it."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
)

from service_feature.auth import generate_key
from service_feature.bus.embedded import free_port
from tests.e2e.json_strings import with_lone_surrogate
from tests.support.platform import greeting_turns, write_script

ADMIN_KEY = generate_key()
STATEFUL_EXAMPLES = 25
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
EXAMPLES = 40  # per operation: about 20 s for the whole API
SURROGATE_EXAMPLES = 15  # per operation with a JSON body
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, ignored_auth]


@pytest.fixture(scope="module")
def platform_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("schemathesis")
    scripts = write_script(home / "scripts", greeting_turns())
    env = {
        **os.environ,
        "SF_DATA_DIR": str(home / "data"),
        # local paths are accepted, so generated requests get through to 202 and stateful runs go on from
        # there (the worker then fails to clone them)
        "ALLOW_LOCAL_REPOSITORIES": "true",
        "LLM_PROVIDER": "scripted",
        "LLM_SCRIPT": str(scripts),
        "SF_ADMIN_KEY": ADMIN_KEY,
        "SF_SUBMIT_RATE_PER_MINUTE": "100000",
        "SF_MAX_QUEUED_PER_KEY": "100000",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (home / "platform.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service_feature.cli", "up", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (home / "platform.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the platform did not become ready"
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_api_honours_its_schema(platform_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{platform_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/api/v1/features" and op.method == "post" for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def honours(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        honours()


def test_lone_surrogates_in_bodies_are_refused_not_a_server_error(platform_url: str) -> None:
    """Schemathesis's strings are valid Unicode; a client's JSON may also hold a lone surrogate (`"\ud800"`),
    which no str field accepts and which UTF-8 cannot encode: each generated body gets one in a string.
    The gateway's operations: the feature routes and the kill switch's."""
    schema = schemathesis.openapi.from_url(f"{platform_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    gateway = ("/api/v1/features", "/api/v1/killswitch")
    with_bodies = [op for op in operations if op.body and op.path.startswith(gateway)]
    assert {op.path for op in with_bodies} >= {"/api/v1/features", "/api/v1/features/{execution_id}/approve"}
    for operation in with_bodies:

        @given(case=operation.as_strategy(), data=st.data())
        @settings(
            max_examples=SURROGATE_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def refused(case: schemathesis.Case, data: st.DataObject) -> None:
            # Sent as the JSON text a client would send (the surrogate `\ud800`-escaped): schemathesis
            # checks a body it is given as data against the schema first, and cannot encode that string.
            case.body = json.dumps(with_lone_surrogate(data, case.body)).encode()
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        refused()


def test_sequences_of_calls_honour_the_schema(platform_url: str) -> None:
    """Stateful: submit, then read, list and cancel what was submitted (links inferred by schemathesis)."""
    schema = schemathesis.openapi.from_url(f"{platform_url}/openapi.json")
    workflow = schema.as_state_machine()

    class Authenticated(workflow):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"headers": AUTH}

        def validate_response(self, response: object, case: schemathesis.Case, **kwargs: object) -> None:
            case.validate_response(response, checks=CHECKS)  # type: ignore[arg-type]

    Authenticated.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
