"""Whole features through the HTTP API: the embedded platform in-process, a scripted agent, a real git
origin, real test runs."""

import asyncio
import json
import subprocess
from pathlib import Path

import nats
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer
from tests.support.platform import (
    FINAL,
    GREETING_TEST,
    call,
    feature_request,
    greeting_turns,
    running_platform,
    turn,
    wait_for,
    write_script,
)


def _git(origin: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(origin), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


async def test_a_request_becomes_a_tested_reviewed_delivered_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        assert (await api.get("/health")).json() == {"status": "healthy", "service": "gateway"}
        assert (await api.get("/ready")).status_code == 200
        response = await api.post("/api/v1/features", json=feature_request(origin, "e2e1"))
        assert response.status_code == 202
        assert response.json()["status"] == "queued"
        feature = await wait_for(api, "e2e1", FINAL)
        assert feature["status"] == "delivered", feature["failure_reason"]
        assert feature["delivered_branch"] == "feature/e2e1"
        assert feature["test_summary"]["passed"] == 2
        assert feature["test_summary"]["failed"] == 0
        assert feature["review_summary"]["decision"] == "approve"
        assert feature["attempts"] == 1

        events = (await api.get("/api/v1/features/e2e1/events")).json()["events"]
        statuses = [e["status"] for e in events if e["type"].startswith("status.")]
        assert statuses == [
            "checking_out",
            "preparing",
            "generating",
            "testing",
            "reviewing",
            "delivering",
            "delivered",
        ]
        prepared = next(e for e in events if e["type"] == "environment.completed")
        assert (prepared["detail"]["passed"], prepared["detail"]["untestable"]) == (1, None)
        preparation = feature["preparation"]
        assert preparation["testable"] is True
        assert preparation["setup"] in {"not needed", "installed", "cached"}
        assert preparation["baseline"]["passed"] == 1
        assert preparation["baseline"]["cached"] is False
        patch = (await api.get("/api/v1/features/e2e1/patch")).text
        assert "+++ b/src/demo_app/greeting.py" in patch
        transcript = (await api.get("/api/v1/features/e2e1/transcript")).json()["entries"]
        assert [e["kind"] for e in transcript][:3] == ["task", "model", "tool"]
        review = (await api.get("/api/v1/features/e2e1/review")).json()
        assert review["decision"] == "approve"

        listed = (await api.get("/api/v1/features", params={"status": "delivered"})).json()
        assert [item["execution_id"] for item in listed["items"]] == ["e2e1"]
        assert (await api.get("/api/v1/features", params={"status": "failed"})).json()["total"] == 0

    assert _git(origin, "rev-parse", "refs/heads/feature/e2e1") == feature["delivered_commit"]
    assert _git(origin, "rev-list", "--count", "main..feature/e2e1") == "1"
    message = _git(origin, "log", "-1", "--format=%B", "feature/e2e1")
    assert message.startswith("Add greeting function\n")
    assert "Execution-Id: e2e1" in message
    assert "Review: approve" in message
    files = _git(origin, "show", "--name-only", "--format=", "feature/e2e1").splitlines()
    assert sorted(files) == ["src/demo_app/greeting.py", "tests/test_greeting.py"]


async def test_failing_tests_go_back_to_the_agent_until_they_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    wrong = 'def greet(name: str) -> str:\n    return f"Hi, {name}"\n'
    right = 'def greet(name: str) -> str:\n    return f"Hello, {name}!"\n'
    write_script(
        scripts,
        [
            turn(
                call("write_file", path="src/demo_app/greeting.py", content=wrong),
                call("write_file", path="tests/test_greeting.py", content=GREETING_TEST),
            ),
            turn(call("finish", summary="first try")),
            turn(
                call(
                    "edit_file",
                    path="src/demo_app/greeting.py",
                    old_str='f"Hi, {name}"',
                    new_str='f"Hello, {name}!"',
                )
            ),
            turn(call("finish", summary="fixed the greeting")),
        ],
    )
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=feature_request(origin, "retry1"))
        feature = await wait_for(api, "retry1", FINAL)
        assert feature["status"] == "delivered", feature["failure_reason"]
        assert feature["attempts"] == 2
        events = (await api.get("/api/v1/features/retry1/events")).json()["events"]
        first_run = next(e for e in events if e["type"] == "tests.completed")
        assert first_run["detail"]["failed"] == 1
        back = next(e for e in events if e["type"] == "status.generating" and e["detail"].get("attempt") == 2)
        assert back["detail"]["reason"] == "tests failed on attempt 1"
    assert right.strip() in _git(origin, "show", "feature/retry1:src/demo_app/greeting.py")


async def test_tests_that_never_pass_fail_the_feature_after_max_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(
        scripts,
        [
            turn(
                call("write_file", path="tests/test_greeting.py", content="def test_x():\n    assert False\n")
            ),
            turn(call("finish", summary="try 1")),
            turn(call("finish", summary="try 2")),
        ],
    )
    async with running_platform(tmp_path, monkeypatch, scripts, MAX_ATTEMPTS="2") as api:
        await api.post("/api/v1/features", json=feature_request(origin, "never"))
        feature = await wait_for(api, "never", FINAL)
    assert feature["status"] == "failed"
    assert feature["failure_reason"] == (
        "tests still failing after 2 attempt(s): 1 new failing: tests.test_greeting::test_x"
    )


async def test_bad_input_is_refused_and_the_platform_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    write_script(scripts, [turn(call("list_files")), turn(call("git_push", force=True))], name="badtool")
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        malformed = await api.post(
            "/api/v1/features", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 422
        assert malformed.json()["detail"][0]["type"] == "json_invalid"

        unknown = await api.post("/api/v1/features", json={**feature_request(origin), "priority": "high"})
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["loc"] == ["body", "priority"]

        missing_title = feature_request(origin)
        del missing_title["specification"]["title"]
        response = await api.post("/api/v1/features", json=missing_title)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "specification", "title"]

        bad_scheme = await api.post("/api/v1/features", json=feature_request("ftp://example.com/r.git"))
        assert bad_scheme.status_code == 422
        assert bad_scheme.json()["detail"][0]["loc"] == ["body", "repository_url"]

        assert (await api.get("/api/v1/features/nope")).status_code == 404
        assert (await api.get("/api/v1/features/bad id!")).status_code == 422

        await api.post("/api/v1/features", json=feature_request(tmp_path / "does-not-exist", "norepo"))
        await api.post("/api/v1/features", json=feature_request(origin, "nobranch", branch="develop"))
        await api.post("/api/v1/features", json=feature_request(origin, "badtool"))
        await api.post("/api/v1/features", json=feature_request(origin, "fine"))

        norepo = await wait_for(api, "norepo", FINAL)
        assert norepo["status"] == "failed"
        assert norepo["failure_reason"].startswith(
            f"checkout failed: git clone of {tmp_path / 'does-not-exist'} failed: "
            f"{tmp_path / 'does-not-exist'} does not exist on this host; check repository_url"
        )
        nobranch = await wait_for(api, "nobranch", FINAL)
        assert nobranch["failure_reason"] == (
            "checkout failed: branch 'develop' does not exist in the repository; "
            "set `branch` to one it has: main"
        )
        badtool = await wait_for(api, "badtool", FINAL)
        assert badtool["failure_reason"] == "LLM script names unknown tool 'git_push' in turn 2"
        fine = await wait_for(api, "fine", FINAL)
        assert fine["status"] == "delivered"


async def test_a_repeated_execution_id_returns_the_existing_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        body = feature_request(origin, "twice")
        first = await api.post("/api/v1/features", json=body)
        second = await api.post("/api/v1/features", json=body)
        assert (first.status_code, second.status_code) == (202, 200)
        assert first.json()["created_at"] == second.json()["created_at"]
        different = {**body, "branch": "other"}
        conflict = await api.post("/api/v1/features", json=different)
        assert conflict.status_code == 409
        assert "execution_id 'twice'" in conflict.json()["detail"]
        await wait_for(api, "twice", FINAL)
        assert (await api.get("/api/v1/features")).json()["total"] == 1


async def test_an_empty_patch_is_rejected_by_the_reviewer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, [turn(call("finish", summary="nothing to do"))])
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=feature_request(origin, "empty"))
        feature = await wait_for(api, "empty", FINAL)
    assert feature["status"] == "rejected"
    assert "empty" in feature["failure_reason"]


async def test_the_pipeline_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path, postgres_url: str
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts, DATABASE_URL=postgres_url) as api:
        await api.post("/api/v1/features", json=feature_request(origin, "pg1"))
        feature = await wait_for(api, "pg1", FINAL)
    assert feature["status"] == "delivered", feature["failure_reason"]
    assert _git(origin, "rev-parse", "refs/heads/feature/pg1") == feature["delivered_commit"]


async def test_a_request_published_straight_to_the_bus_is_built(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    origin: Path,
    scripts: Path,
    nats_server: EmbeddedNatsServer,
) -> None:
    """The reference design's `nats pub feature.requests "$(cat request.json)"`, and a poison message
    beside it."""
    write_script(scripts, greeting_turns())
    queue = f"{nats_server.url}/feature.requests"
    async with running_platform(tmp_path, monkeypatch, scripts, QUEUE_FEATURE_REQUEST_URI=queue) as api:
        client = await nats.connect(nats_server.url)
        await client.publish("feature.requests", b'{"execution_id": "poison", "oops": true}')
        await client.publish("feature.requests", json.dumps(feature_request(origin, "viabus")).encode())
        await client.flush()
        await client.close()
        feature = await wait_for(api, "viabus", FINAL)
        assert feature["status"] == "delivered"
        assert (await api.get("/api/v1/features/poison")).status_code == 404


async def test_cancelling_a_feature_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns(), latency_ms=700)
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=feature_request(origin, "stopme"))
        await wait_for(api, "stopme", {"generating"})
        cancelled = await api.post("/api/v1/features/stopme/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert (await api.post("/api/v1/features/stopme/cancel")).status_code == 409
        await asyncio.sleep(3)  # the agent's step finishes and must not move the feature on
        feature = (await api.get("/api/v1/features/stopme")).json()
    assert feature["status"] == "cancelled"
    assert feature["delivered_branch"] is None
    assert _git(origin, "branch", "--list", "feature/stopme") == ""
