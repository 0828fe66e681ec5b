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
