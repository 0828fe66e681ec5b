"""A hostile agent against the real embedded platform (issue 12, items 2 to 4): a pattern that would
backtrack for days, tools that fail in ways no tool expects (a binary file, a file under a file, a symlink
loop) and an argument far over what any tool accepts. Each is an error result the agent reads and gets past;
the platform stays responsive throughout, and a normal feature is delivered afterwards."""

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service_feature.worker.agent import STORED_CHARS
from service_feature.worker.tools import MAX_ARGUMENT_CHARS
from tests.support.platform import (
    EXAMPLES,
    FINAL,
    PlatformClient,
    call,
    demo_origin_with,
    feature_request,
    greeting_turns,
    running_platform,
    turn,
    wait_for,
    write_script,
)

BOMB = "a" * 64 + "!\n"  # `(a+)+$` over this line: 2**64 backtracking steps for Python's `re`
HUGE = "x" * (MAX_ARGUMENT_CHARS + 1_000_000)


def _hostile_origin(tmp_path: Path) -> Path:
    """The demo project with a binary file and a symlink loop, as a bare origin."""
    template = tmp_path / "template"
    shutil.copytree(EXAMPLES / "demo-repo", template)
    (template / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 400)
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(template)], check=True)
    os.symlink("loop", template / "loop")  # after the copy: copying would follow the loop
    identity = ["-c", "user.name=Test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "add", "-A"], cwd=template, check=True)
    subprocess.run(["git", *identity, "commit", "-q", "-m", "hostile"], cwd=template, check=True)
    origin = tmp_path / "hostile-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(template), str(origin)], check=True)
    return origin


def _hostile_turns() -> list[dict[str, object]]:
    """Every hostile call, then the ordinary change, so the hostile feature itself can be delivered."""
    return [
        turn(call("write_file", path="bomb.txt", content=BOMB)),
        turn(call("search", pattern="(a+)+$"), call("search", pattern=r"(a)\1")),
        turn(
            call("edit_file", path="logo.png", old_str="PNG", new_str="GIF"),
            call("write_file", path="README.md/inside.py", content="x = 1\n"),
            call("read_file", path="loop"),
            call("write_file", path="huge.txt", content=HUGE),
            call("delete_file", path="bomb.txt"),
        ),
        *greeting_turns(),
    ]


@contextlib.asynccontextmanager
async def _health_polled(api: PlatformClient) -> AsyncIterator[list[int]]:
    """/health polled all along: a blocked event loop would time the client out (an exception here)."""
    statuses: list[int] = []

    async def poll() -> None:
        while True:
            statuses.append((await api.get("/health")).status_code)
            await asyncio.sleep(0.2)

    poller = asyncio.create_task(poll())
    try:
        yield statuses
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


@pytest.mark.timeout(240)  # before RE2, the search alone held the whole process for days
async def test_a_hostile_agent_is_answered_with_errors_and_the_platform_stays_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, origin: Path
) -> None:
    hostile_origin = _hostile_origin(tmp_path)
    write_script(scripts, _hostile_turns(), name="hostile")
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api, _health_polled(api) as health:
        await api.post("/api/v1/features", json=feature_request(hostile_origin, "hostile"))
        hostile = await wait_for(api, "hostile", FINAL, timeout=180)
        transcript = (await api.get("/api/v1/features/hostile/transcript")).json()["entries"]
        await api.post("/api/v1/features", json=feature_request(origin, "normal"))
        normal = await wait_for(api, "normal", FINAL, timeout=120)
        events = (await api.get("/api/v1/features/hostile/events")).json()["events"]

    assert hostile["status"] == "delivered", hostile["failure_reason"]
    assert normal["status"] == "delivered", normal["failure_reason"]
    assert hostile["attempts"] == 1  # no exception replayed the agent
    statuses = [e["status"] for e in events if e["type"].startswith("status.")]
    assert statuses.count("generating") == 1
    assert health
    assert set(health) == {200}

    tools = [entry["content"] for entry in transcript if entry["kind"] == "tool"]
    outcomes = [(tool["name"], tool["is_error"], tool["result"]) for tool in tools]
    assert ("search", False, "no matches") in outcomes
    errors = [result for _, is_error, result in outcomes if is_error]
    for expected in (
        "RE2 syntax",
        "not UTF-8 text",
        "'README.md' is a file",
        "symlink loop",
        "over the limit",
    ):
        assert any(expected in error for error in errors), (expected, errors)
    stored = json.dumps(transcript)
    assert str(tmp_path) not in stored
    assert len(stored) < 10 * STORED_CHARS  # the 3 MB argument is stored as head, tail, size and digest


@contextlib.asynccontextmanager
async def _listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A service on the host's loopback that records every connection made to it."""
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(200))
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(420)
async def test_a_full_hostile_pass_leaves_the_platform_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, origin: Path
) -> None:
    """Every case of the hostile probe against one platform in one run (setup reaching for the host, a
    disk hog, the hostile agent, the gateway's 500s), then an ordinary feature, which is delivered."""
    write_script(scripts, greeting_turns())
    write_script(scripts, _hostile_turns(), name="agent")
    hog = [
        turn(call("run_command", command="head -c 100M /dev/zero > /tmp/hog; ls -l /tmp/hog")),
        *greeting_turns(),
    ]
    write_script(scripts, hog, name="hog")
    async with _listener() as (port, received):
        reacher = demo_origin_with(
            tmp_path,
            "reacher",
            {"requirements.txt": f"--find-links http://127.0.0.1:{port}/\nsix\n"},
        )
        env = {"SANDBOX_DISK_QUOTA_MB": "32", "SF_SUBMIT_RATE_PER_MINUTE": "1000"}
        async with (
            running_platform(tmp_path, monkeypatch, scripts, **env) as api,
            _health_polled(api) as health,
        ):
            submissions = [
                feature_request(reacher, "reacher"),
                feature_request(_hostile_origin(tmp_path), "agent"),
                feature_request(origin, "hog"),
            ]
            for submission in submissions:
                assert (await api.post("/api/v1/features", json=submission)).status_code == 202
            lone = feature_request(origin, "bad")
            lone["specification"]["title"] = "\ud800"
            surrogate = json.dumps(lone, ensure_ascii=True)
            bad = await api.post(
                "/api/v1/features", content=surrogate, headers={"content-type": "application/json"}
            )
            race = await asyncio.gather(
                *(api.post("/api/v1/features", json=feature_request(origin, "race")) for _ in range(10))
            )
            ended = {
                s["execution_id"]: await wait_for(api, s["execution_id"], FINAL, 300) for s in submissions
            }
            transcript = (await api.get("/api/v1/features/hog/transcript")).json()["entries"]
            await api.post("/api/v1/features", json=feature_request(origin, "after"))
            after = await wait_for(api, "after", FINAL, timeout=180)

    assert received == []  # setup never reached the host's loopback
    assert ended["reacher"]["status"] in {"delivered", "failed"}, ended["reacher"]
    assert ended["agent"]["status"] == "delivered", ended["agent"]["failure_reason"]
    assert ended["hog"]["status"] == "delivered", ended["hog"]["failure_reason"]
    hogged = next(
        e["content"]["result"]
        for e in transcript
        if e["kind"] == "tool" and e["content"]["name"] == "run_command"
    )
    assert "No space left on device" in hogged, hogged
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["type"] == "string_unicode"
    assert sorted(r.status_code for r in race) == [200] * 9 + [202]
    assert set(health) == {200}
    assert after["status"] == "delivered", after["failure_reason"]
