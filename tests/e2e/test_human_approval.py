"""A patch the reviewer holds for a person (`needs_human`) waits in awaiting_approval; an admin approves
(it is delivered) or rejects it with a reason; nothing is delivered without an approve decision."""

import asyncio
import subprocess
from pathlib import Path

import pytest

from service_feature.auth import Role
from tests.support.platform import (
    FINAL,
    GREETING,
    GREETING_TEST,
    call,
    feature_request,
    running_platform,
    turn,
    wait_for,
    write_script,
)


def _turns() -> list[dict[str, object]]:
    """The greeting, plus an edit outside `target_files`: a policy finding that scores above 0."""
    return [
        turn(
            call("write_file", path="src/demo_app/greeting.py", content=GREETING),
            call("write_file", path="tests/test_greeting.py", content=GREETING_TEST),
            call("write_file", path="README.md", content="# demo-app\n\nNow with greetings.\n"),
        ),
        turn(call("finish", summary="added greet() and documented it")),
    ]


async def test_held_features_wait_for_a_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, _turns())
    async with running_platform(tmp_path, monkeypatch, scripts, MAX_RISK_SCORE="0") as api:
        for execution_id in ("held1", "held2"):
            await api.post("/api/v1/features", json=feature_request(origin, execution_id))
        for execution_id in ("held1", "held2"):
            feature = await wait_for(api, execution_id, FINAL)
            assert feature["status"] == "awaiting_approval", feature["failure_reason"]
            assert feature["review_summary"]["decision"] == "needs_human"
            assert feature["review_summary"]["risk_score"] > 0
        await asyncio.sleep(1)
        assert (await api.get("/api/v1/features/held1")).json()["status"] == "awaiting_approval"
        assert _branch(origin, "held1") == ""

        submitter = await api.client_as(Role.submitter)
        assert (await submitter.post("/api/v1/features/held1/approve", json={})).status_code == 403
        missing_reason = await api.post("/api/v1/features/held2/reject", json={})
        assert missing_reason.status_code == 422
        assert missing_reason.json()["detail"][0]["loc"] == ["body", "reason"]

        approved = await api.post("/api/v1/features/held1/approve", json={"reason": "README change is fine"})
        assert approved.status_code == 200
        rejected = await api.post("/api/v1/features/held2/reject", json={"reason": "no README edits"})
        assert rejected.status_code == 200
        assert rejected.json()["status"] == "rejected"
        assert (await api.post("/api/v1/features/held2/approve", json={})).status_code == 409

        delivered = await wait_for(api, "held1", {"delivered", "failed"})
        assert delivered["status"] == "delivered", delivered["failure_reason"]
        events = (await api.get("/api/v1/features/held1/events")).json()["events"]
        approval = next(e for e in events if e["type"] == "status.delivering")
        assert approval["detail"]["comment"] == "README change is fine"
        assert approval["detail"]["approved_by"]
        held2 = (await api.get("/api/v1/features/held2")).json()
        assert held2["failure_reason"].endswith(": no README edits")
    assert _branch(origin, "held1") != ""
    assert _branch(origin, "held2") == ""


def _branch(origin: Path, execution_id: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(origin), "branch", "--list", f"feature/{execution_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
