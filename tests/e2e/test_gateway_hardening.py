"""The gateway's answers to what a black-box probe tried (issue 12, items 6 and 7), through the real
embedded platform: lone surrogates, a race on one new execution_id, another key's execution_id, the
SQLite file's mode and the embedded `up`'s listening address."""

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_feature.auth import Role, issue_key
from service_feature.bus.embedded import free_port
from service_feature.config import CommonSettings
from service_feature.runtime import Platform
from service_feature.store.database import restrict_sqlite_file
from tests.e2e.json_strings import replaced, string_paths
from tests.support.platform import feature_request, greeting_turns, running_platform, write_script

# Accepted by the gateway (local paths are, in the embedded platform); the worker's clone fails at once,
# and nothing leaves the machine.
NEVER_CLONED = "/nonexistent/service-feature-test-repository"
LONE_SURROGATE = "\ud800"


def as_json(document: Any) -> bytes:
    """JSON as a client may send it: a lone surrogate as its `\\ud800` escape (valid JSON, not UTF-8)."""
    return json.dumps(document, ensure_ascii=True).encode()


async def test_a_lone_surrogate_in_any_string_field_is_a_422(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    request = feature_request(NEVER_CLONED, "surrogates", test_command="pytest -q")
    request["specification"]["target_files"] = ["src/demo_app/greeting.py"]
    bodies = [
        ("/api/v1/features", replaced(request, path, f"a{LONE_SURROGATE}b")) for path in string_paths(request)
    ]
    for route in ("/api/v1/features/surrogates/approve", "/api/v1/features/surrogates/reject"):
        bodies.append((route, {"reason": LONE_SURROGATE}))
    headers = {"content-type": "application/json"}
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        for route, body in bodies:
            response = await api.post(route, content=as_json(body), headers=headers)
            assert response.status_code == 422, (route, body, response.text)
            assert response.json()["detail"][0]["type"] == "string_unicode", response.text
        assert (await api.get("/api/v1/features/surrogates")).status_code == 404


async def test_concurrent_submissions_of_one_new_execution_id_never_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, database_url: str
) -> None:
    """The unique key settles the race: one submission creates, the others are the repeat they are."""
    write_script(scripts, greeting_turns())
    async with running_platform(
        tmp_path, monkeypatch, scripts, DATABASE_URL=database_url, SF_SUBMIT_RATE_PER_MINUTE="1000"
    ) as api:
        same = feature_request(NEVER_CLONED, "race")
        repeats = await asyncio.gather(*(api.post("/api/v1/features", json=same) for _ in range(10)))
        assert sorted(r.status_code for r in repeats) == [200] * 9 + [202], [r.text for r in repeats]
        assert len({r.json()["created_at"] for r in repeats}) == 1

        different = [feature_request(NEVER_CLONED, "race2", branch=f"b{n}") for n in range(10)]
        answers = await asyncio.gather(*(api.post("/api/v1/features", json=body) for body in different))
        assert sorted(r.status_code for r in answers) == [202] + [409] * 9, [r.text for r in answers]
        assert (await api.get("/api/v1/features")).json()["total"] == 2


async def test_another_keys_execution_id_is_unknown_to_a_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        alice = await api.client_as(Role.submitter, "alice")
        bob = await api.client_as(Role.submitter, "bob")
        request = feature_request(NEVER_CLONED, "alices")
        assert (await alice.post("/api/v1/features", json=request)).status_code == 202
        unknown = await bob.get("/api/v1/features/alices")
        for body in (request, {**request, "branch": "other"}):
            submitted = await bob.post("/api/v1/features", json=body)
            assert (submitted.status_code, submitted.json()) == (404, unknown.json())
        assert (await bob.post("/api/v1/features/alices/cancel")).status_code == 404
        # the owner's repeat and conflict answer as before
        assert (await alice.post("/api/v1/features", json=request)).status_code == 200
        assert (await alice.post("/api/v1/features", json={**request, "branch": "x"})).status_code == 409


async def test_the_sqlite_database_is_readable_by_its_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    previous = os.umask(0o022)  # a usual shell's: files are created 0644 unless asked otherwise
    try:
        async with running_platform(tmp_path, monkeypatch, scripts) as api:
            assert (await api.post("/api/v1/features", json=feature_request(NEVER_CLONED))).status_code == 202
            files = sorted((tmp_path / "data").glob("service-feature.db*"))
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
    finally:
        os.umask(previous)
    assert "service-feature.db" in modes
    assert modes == dict.fromkeys(modes, 0o600)


def test_an_existing_sqlite_file_is_narrowed_to_its_owner(tmp_path: Path) -> None:
    """A database an older release created 0644 becomes 0600 when the platform next opens it."""
    path = tmp_path / "old.db"
    path.write_bytes(b"")
    path.chmod(0o644)
    restrict_sqlite_file(f"sqlite+aiosqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a TCP socket listens on at `port`, from /proc (no traffic sent anywhere)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:
            addresses.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses


def test_the_embedded_up_listens_on_loopback_by_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SERVER_ADDRESS"}
    env |= {"SF_DATA_DIR": str(tmp_path / "data"), "LLM_PROVIDER": "scripted"}
    port = free_port()
    with (tmp_path / "up.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service_feature.cli", "up", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180  # a cold start on a loaded 2-core machine
        while True:
            assert process.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the platform did not become ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


async def test_a_gateway_alone_serves_the_kill_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    """As in Compose and Kubernetes, where the gateway is the only service with a reachable port."""
    monkeypatch.setenv("SF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SERVER_ADDRESS", "127.0.0.1:0")
    platform = Platform(services=("gateway",), settings=CommonSettings())
    await platform.start()
    try:
        assert platform.database is not None
        admin = await issue_key(platform.database, name="ops", role=Role.admin)
        url = f"http://127.0.0.1:{platform.bound_port}"
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {admin.secret}"}
        ) as api:
            engaged = await api.post("/api/v1/killswitch/engage", json={"reason": "drill"})
            assert engaged.status_code == 200
            assert (await api.get("/api/v1/killswitch/status")).json()["engaged"] is True
            assert (await api.post("/api/v1/killswitch/release", json={"reason": "done"})).status_code == 200
    finally:
        await platform.stop()
