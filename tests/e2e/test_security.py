"""Who may do what, and hostile input, through the real HTTP API and the real bus: API keys and roles,
per-key limits, repository URL checks at the gateway and again in the worker, poison messages."""

import asyncio
import json
import socket
import uuid
from pathlib import Path

import httpx
import nats
import pytest

from service_feature.auth import Role
from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.bus.nats import DEAD_LETTER_STREAM, REASON_HEADER, SUBJECT_HEADER
from service_feature.events import Subjects
from service_feature.ratelimit import RateLimiter
from service_feature.store.apikeys import revoke_key
from tests.support.platform import (
    FINAL,
    feature_request,
    greeting_turns,
    running_platform,
    wait_for,
    write_script,
)

FEATURE_ROUTES = ["", "/{id}", "/{id}/events", "/{id}/patch", "/{id}/review", "/{id}/transcript"]


async def test_every_api_route_needs_a_key_and_operations_stay_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        schema = (await api.get("/openapi.json")).json()
        anonymous = httpx.AsyncClient(base_url=api.base_url)
        wrong = httpx.AsyncClient(base_url=api.base_url, headers={"Authorization": "Bearer sf_not-a-key"})
        async with anonymous, wrong:
            for path in ("/health", "/ready", "/metrics"):
                assert (await anonymous.get(path)).status_code == 200, path
            api_paths = [p for p in schema["paths"] if p.startswith("/api/v1")]
            assert "/api/v1/executions/active" in api_paths
            webhooks = "/api/v1/webhooks/{forge}"
            assert webhooks in api_paths  # signed by the forge instead: off (404) until its secret is set
            for client in (anonymous, wrong):
                assert (await client.post(webhooks.replace("{forge}", "github"))).status_code == 404
            for path in api_paths:
                if path == webhooks:
                    continue
                for method in schema["paths"][path]:
                    url = path.replace("{execution_id}", "x1")
                    for client in (anonymous, wrong):
                        response = await client.request(method.upper(), url)
                        assert response.status_code == 401, (method, path)
                        assert response.headers["www-authenticate"] == "Bearer"
        assert (await api.get("/api/v1/executions/active")).status_code == 200


async def test_roles_and_a_submitter_sees_only_its_own_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        alice = await api.client_as(Role.submitter, "alice")
        bob = await api.client_as(Role.submitter, "bob")
        reader = await api.client_as(Role.reader, "auditor")

        refused = await reader.post("/api/v1/features", json=feature_request(origin, "byreader"))
        assert refused.status_code == 403
        assert (await alice.get("/api/v1/executions/active")).status_code == 403
        assert (await reader.get("/api/v1/executions/active")).status_code == 200

        accepted = await alice.post("/api/v1/features", json=feature_request(origin, "alices"))
        assert accepted.status_code == 202
        assert accepted.json()["submitted_by"] == alice.key_id
        feature = await wait_for(alice, "alices", FINAL)
        assert feature["status"] == "delivered", feature["failure_reason"]

        for route in FEATURE_ROUTES[1:]:
            path = "/api/v1/features" + route.replace("{id}", "alices")
            assert (await alice.get(path)).status_code == 200, path
            assert (await reader.get(path)).status_code == 200, path
            assert (await api.get(path)).status_code == 200, path
            assert (await bob.get(path)).status_code == 404, path
        assert (await bob.post("/api/v1/features/alices/cancel")).status_code == 404
        assert (await reader.post("/api/v1/features/alices/cancel")).status_code == 403
        # the same execution_id from another key does not reveal or return alice's feature: a submission
        # answers as the reads do, so the write does not contradict the reads' 404
        taken = await bob.post("/api/v1/features", json=feature_request(origin, "alices"))
        assert taken.status_code == 404
        assert taken.json() == (await bob.get("/api/v1/features/alices")).json()

        assert (await bob.get("/api/v1/features")).json()["total"] == 0
        assert [f["execution_id"] for f in (await alice.get("/api/v1/features")).json()["items"]] == [
            "alices"
        ]
        assert (await reader.get("/api/v1/features")).json()["total"] == 1


async def test_submissions_are_rate_limited_per_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts, SF_SUBMIT_RATE_PER_MINUTE="2") as api:
        first = await api.client_as(Role.submitter)
        second = await api.client_as(Role.submitter)
        url = "https://8.8.8.8/never-cloned.git"  # accepted by the gateway; the worker's clone just fails
        codes = [
            (await first.post("/api/v1/features", json=feature_request(url))).status_code for _ in range(3)
        ]
        assert codes == [202, 202, 429]
        limited = await first.post("/api/v1/features", json=feature_request(url))
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert (await second.post("/api/v1/features", json=feature_request(url))).status_code == 202


async def test_the_rate_limit_is_shared_through_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    """Another gateway replica's submissions count: the window lives in Redis."""
    write_script(scripts, greeting_turns())
    redis = "redis://127.0.0.1:6379/0"
    async with running_platform(
        tmp_path, monkeypatch, scripts, SF_SUBMIT_RATE_PER_MINUTE="2", REDIS_URL=redis
    ) as api:
        client = await api.client_as(Role.submitter)
        other_replica = RateLimiter("submit", 2, redis)
        assert client.key_id is not None
        assert await other_replica.hit(client.key_id) is None
        assert await other_replica.hit(client.key_id) is None
        response = await client.post("/api/v1/features", json=feature_request("https://8.8.8.8/r.git"))
        assert response.status_code == 429


async def test_a_dead_redis_does_not_fail_submissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    """Redis only shares the rate-limit window: without it, submissions are accepted and still limited."""
    write_script(scripts, greeting_turns())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_redis = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    async with running_platform(
        tmp_path, monkeypatch, scripts, SF_SUBMIT_RATE_PER_MINUTE="2", REDIS_URL=dead_redis
    ) as api:
        client = await api.client_as(Role.submitter)
        request = feature_request("https://8.8.8.8/never-cloned.git")
        codes = [(await client.post("/api/v1/features", json=request)).status_code for _ in range(3)]

    assert codes == [202, 202, 429]


async def test_queued_features_per_key_are_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns(), latency_ms=1500)
    async with running_platform(tmp_path, monkeypatch, scripts, SF_MAX_QUEUED_PER_KEY="1") as api:
        client = await api.client_as(Role.submitter)
        assert (await client.post("/api/v1/features", json=feature_request(origin, "one"))).status_code == 202
        over = await client.post("/api/v1/features", json=feature_request(origin, "two"))
        assert over.status_code == 429
        assert "SF_MAX_QUEUED_PER_KEY" in over.json()["detail"]
        assert (await client.post("/api/v1/features/one/cancel")).status_code == 200
        assert (await client.post("/api/v1/features", json=feature_request(origin, "two"))).status_code == 202


async def test_request_bodies_are_size_limited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts, SF_MAX_BODY_BYTES="4096") as api:
        big = feature_request(origin, "big")
        big["specification"]["description"] = "x" * 5000
        assert (await api.post("/api/v1/features", json=big)).status_code == 413

        async def chunks():  # type: ignore[no-untyped-def]
            body = json.dumps(big).encode()
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        streamed = await api.post(
            "/api/v1/features", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413
        big["specification"]["description"] = "x" * 100
        assert (await api.post("/api/v1/features", json=big)).status_code == 202


async def test_a_revoked_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        client = await api.client_as(Role.reader)
        assert (await client.get("/api/v1/features")).status_code == 200
        assert api.platform.database is not None
        assert client.key_id is not None
        async with api.platform.database.transaction() as session:
            assert await revoke_key(session, client.key_id)
        assert (await client.get("/api/v1/features")).status_code == 401


HOSTILE = [
    ({"repository_url": "https://127.0.0.1/repo.git"}, ["body", "repository_url"]),
    ({"repository_url": "https://169.254.169.254/latest/meta-data/"}, ["body", "repository_url"]),
    ({"repository_url": "https://[::1]:8443/r.git"}, ["body", "repository_url"]),
    ({"repository_url": "https://user:token@github.com/a/b.git"}, ["body", "repository_url"]),
    ({"branch": "main..evil"}, ["body", "branch"]),
    ({"branch": "--upload-pack=x"}, ["body", "branch"]),
    (
        {"specification": {"target_files": ["src/../../../etc/passwd"]}},
        ["body", "specification", "target_files"],
    ),
    ({"specification": {"target_files": [".git/hooks/pre-push"]}}, ["body", "specification", "target_files"]),
]


async def test_hostile_requests_are_refused_at_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        for overrides, location in HOSTILE:
            request = feature_request(origin)
            request["specification"].update(overrides.pop("specification", {}))
            request.update(overrides)
            response = await api.post("/api/v1/features", json=request)
            assert response.status_code == 422, overrides
            assert response.json()["detail"][0]["loc"][: len(location)] == location
        assert (await api.get("/api/v1/features")).json()["total"] == 0


async def test_an_allowlisted_internal_host_passes_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    allowlist = {"REPOSITORY_ALLOWLIST": "127.0.0.1", "SF_MAX_DELIVER": "2"}  # two tries keep it short
    async with running_platform(tmp_path, monkeypatch, scripts, **allowlist) as api:
        inside = await api.post("/api/v1/features", json=feature_request("https://127.0.0.1:1/r.git", "al"))
        assert inside.status_code == 202
        public = await api.post("/api/v1/features", json=feature_request("https://8.8.8.8/r.git"))
        assert public.status_code == 422
        assert "REPOSITORY_ALLOWLIST" in public.json()["detail"][0]["msg"]
        feature = await wait_for(api, "al", FINAL, timeout=180)
        # Nothing answers there: a network failure, retried with back-off before the feature fails.
        assert feature["failure_reason"].startswith("gave up after 2 tries, the last: checkout failed: ")
        assert "git clone of https://127.0.0.1:1/r.git failed: unable to access" in feature["failure_reason"]


async def test_the_worker_checks_the_repository_host_again(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scripts: Path,
    nats_server: EmbeddedNatsServer,
) -> None:
    """A request that skips the gateway (straight onto the bus) is refused by the worker before cloning."""
    write_script(scripts, greeting_turns())
    queue = f"{nats_server.url}/feature.requests"
    async with running_platform(tmp_path, monkeypatch, scripts, QUEUE_FEATURE_REQUEST_URI=queue) as api:
        client = await nats.connect(nats_server.url)
        request = feature_request("https://169.254.169.254/latest.git", "metadata")
        await client.publish("feature.requests", json.dumps(request).encode())
        leaky = feature_request("https://ghp_secret@github.com/a/b.git", "leaky")
        await client.publish("feature.requests", json.dumps(leaky).encode())
        await client.flush()
        await client.close()
        feature = await wait_for(api, "metadata", FINAL)
        assert feature["status"] == "failed"
        assert "internal address" in feature["failure_reason"]
        assert feature["submitted_by"] is None
        # a URL with a token in it is never stored: the request is dead-lettered, not accepted
        letters = await _dead_letters(nats_server.url, 1)
        assert [key.split()[0] for key in letters] == ["feature.requests"]
        assert all(reason.startswith("invalid event") for reason in letters.values())
        assert (await api.get("/api/v1/features/leaky")).status_code == 404


async def _dead_letters(url: str, count: int) -> dict[str, str]:
    """Original subject → reason of the first `count` dead letters."""
    client = await nats.connect(url)
    js = client.jetstream()
    found: dict[str, str] = {}
    sequence = 1
    async with asyncio.timeout(30):
        while len(found) < count:
            try:
                message = await js.get_msg(DEAD_LETTER_STREAM, seq=sequence)
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.1)
                continue
            headers = message.headers or {}
            found[f"{headers[SUBJECT_HEADER]} {sequence}"] = headers[REASON_HEADER]
            sequence += 1
    await client.close()
    return found


async def test_poison_on_every_work_subject_is_dead_lettered_and_consumers_keep_going(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    origin: Path,
    scripts: Path,
    nats_server: EmbeddedNatsServer,
) -> None:
    write_script(scripts, greeting_turns())
    queue = f"{nats_server.url}/feature.requests"
    unknown_version = {"version": 99, "type": "feature.requested", "execution_id": "ghost", "payload": {}}
    poisons = {
        "invalid JSON": b"{not json",
        "wrong schema": json.dumps({"execution_id": "ghost", "oops": True}).encode(),
        "unknown version": json.dumps(unknown_version).encode(),
    }
    async with running_platform(tmp_path, monkeypatch, scripts, QUEUE_FEATURE_REQUEST_URI=queue) as api:
        client = await nats.connect(nats_server.url)
        js = client.jetstream()
        for subject in Subjects.WORK:
            for poison in poisons.values():
                await js.publish(subject, poison, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        await client.close()
        letters = await _dead_letters(nats_server.url, len(Subjects.WORK) * len(poisons))
        subjects = sorted({key.split()[0] for key in letters})
        assert subjects == sorted(Subjects.WORK)
        assert all(reason.startswith("invalid event") for reason in letters.values()), letters
        assert sum("version" in reason for reason in letters.values()) >= len(Subjects.WORK)

        response = await api.post("/api/v1/features", json=feature_request(origin, "after"))
        assert response.status_code == 202
        feature = await wait_for(api, "after", FINAL)
        assert feature["status"] == "delivered", feature["failure_reason"]
