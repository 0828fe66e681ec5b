"""The command line for what a person decides, against the embedded platform: approve and reject a held
feature, cancel one, the kill switch, a feature's log (followed live) and transcript; `--json` output that
parses, and the gateway's refusals as exit code 1 with its detail and a hint on stderr."""

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service_feature.auth import Role
from service_feature.bus.embedded import free_port
from tests.support.platform import (
    FINAL,
    GREETING,
    GREETING_TEST,
    call,
    feature_request,
    greeting_turns,
    running_platform,
    turn,
    wait_for,
    write_script,
)


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error(self) -> Any:
        return json.loads(self.err)


async def cli(url: str, key: str, *args: str) -> Ran:
    """`service-feature ARGS --url URL --api-key KEY` as a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service_feature.cli",
        *args,
        "--url",
        url,
        "--api-key",
        key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def held_turns() -> list[dict[str, Any]]:
    """The greeting plus an edit outside `target_files`: the reviewer holds it for a person."""
    return [
        turn(
            call("write_file", path="src/demo_app/greeting.py", content=GREETING),
            call("write_file", path="tests/test_greeting.py", content=GREETING_TEST),
            call("write_file", path="README.md", content="# demo-app\n\nNow with greetings.\n"),
        ),
        turn(call("finish", summary="added greet() and documented it")),
    ]


async def test_a_person_decides_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, held_turns())
    async with running_platform(tmp_path, monkeypatch, scripts, MAX_RISK_SCORE="0") as api:
        url, admin = str(api.base_url), api.key
        submitter = await api.client_as(Role.submitter, "someone")
        for execution_id in ("held1", "held2", "held3"):
            await submitter.post("/api/v1/features", json=feature_request(origin, execution_id))
        for execution_id in ("held1", "held2", "held3"):
            assert (await wait_for(api, execution_id, FINAL))["status"] == "awaiting_approval"

        # A follower started now sees the approval, the delivery, and the end of the stream.
        follower = asyncio.create_task(cli(url, admin, "logs", "held1", "--follow", "--json"))
        approved = await cli(url, admin, "approve", "held1", "--reason", "README change is fine", "--json")
        assert approved.code == 0, approved.err
        assert approved.json()["status"] == "delivering"
        followed = await follower
        assert followed.code == 0, followed.err
        lines = [json.loads(line) for line in followed.out.splitlines()]
        logged = (await api.get("/api/v1/features/held1/events")).json()["events"]
        assert lines == [{"execution_id": "held1", **event} for event in logged]
        assert lines[-1]["status"] == "delivered"
        assert next(e for e in lines if e["type"] == "status.delivering")["detail"]["comment"] == (
            "README change is fine"
        )

        rejected = await cli(url, admin, "reject", "held2", "--reason", "no README edits")
        assert rejected.code == 0, rejected.err
        assert "rejected held2" in rejected.out
        assert (await api.get("/api/v1/features/held2")).json()["failure_reason"].endswith("no README edits")
        again = await cli(url, admin, "approve", "held2", "--json")
        assert (again.code, again.out) == (1, "")
        assert again.error() == {"status_code": 409, "detail": "feature is rejected, not awaiting_approval"}
        human = await cli(url, admin, "approve", "held2")
        assert human.code == 1
        assert "error 409" in human.err
        assert "hint:" in human.err
        assert (await cli(url, admin, "reject", "held2")).code == 2  # --reason is required

        not_allowed = await cli(url, submitter.key, "approve", "held3")
        assert not_allowed.code == 1
        assert "error 403" in not_allowed.err
        assert "admin key" in not_allowed.err
        cancelled = await cli(url, submitter.key, "cancel", "held3", "--json")
        assert cancelled.code == 0, cancelled.err
        assert cancelled.json()["status"] == "cancelled"
        twice = await cli(url, submitter.key, "cancel", "held3", "--json")
        assert (twice.code, twice.error()["status_code"]) == (1, 409)

        other = await api.client_as(Role.submitter, "someone else")
        unseen = await cli(url, other.key, "logs", "held1", "--follow", "--json")
        assert unseen.code == 1
        assert unseen.error() == {"status_code": 404, "detail": "feature 'held1' not found"}
        assert (await cli(url, "sf_not-a-key", "logs", "held1")).code == 1
        unreachable = await cli(f"http://127.0.0.1:{free_port()}", admin, "cancel", "held1", "--json")
        assert unreachable.code == 3
        assert unreachable.error()["status_code"] is None

        log = await cli(url, admin, "logs", "held2", "--json")
        assert [event["status"] for event in log.json()["events"]][-1] == "rejected"
        shown = await cli(url, admin, "logs", "held2")
        assert shown.code == 0
        assert "rejected" in shown.out.splitlines()[-1]
        ended = await cli(url, admin, "logs", "held2", "--follow")
        assert ended.code == 0
        assert "rejected" in ended.out.splitlines()[-1]

        transcript = await cli(url, admin, "transcript", "held1", "--json")
        assert transcript.code == 0, transcript.err
        assert transcript.json() == (await api.get("/api/v1/features/held1/transcript")).json()
        assert [entry["kind"] for entry in transcript.json()["entries"]][:3] == ["task", "model", "tool"]
        readable = await cli(url, admin, "transcript", "held1")
        assert "attempt 1 model" in readable.out


async def test_the_kill_switch_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        url, admin = str(api.base_url), api.key
        reader = await api.client_as(Role.reader, "on call")
        initial = await cli(url, reader.key, "killswitch", "status", "--json")
        assert initial.code == 0, initial.err
        assert initial.json()["engaged"] is False

        refused = await cli(url, reader.key, "killswitch", "engage", "--reason", "x", "--json")
        assert (refused.code, refused.error()["status_code"]) == (1, 403)
        engaged = await cli(url, admin, "killswitch", "engage", "--reason", "incident 42", "--json")
        assert engaged.code == 0, engaged.err
        assert (engaged.json()["engaged"], engaged.json()["reason"]) == (True, "incident 42")
        status = await cli(url, reader.key, "killswitch", "status")
        assert "ENGAGED" in status.out
        assert "incident 42" in status.out
        assert (await api.get("/api/v1/killswitch/status")).json()["engaged"] is True

        released = await cli(url, admin, "killswitch", "release", "--reason", "resolved")
        assert released.code == 0, released.err
        assert "released" in released.out
        after = await cli(url, admin, "killswitch", "status", "--json")
        assert (after.json()["engaged"], after.json()["reason"]) == (False, "resolved")
        assert (await cli(url, admin, "killswitch", "engage")).code == 2  # --reason is required
