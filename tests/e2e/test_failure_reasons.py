"""Failures a user can act on, through the HTTP API of the real embedded platform: a base commit that cannot
be tested fails before any model call, and a repository that cannot be cloned says which and why."""

from pathlib import Path

import pytest

from tests.support.platform import (
    FINAL,
    PlatformClient,
    demo_origin_with,
    feature_request,
    greeting_turns,
    running_platform,
    wait_for,
    write_script,
)
from tests.support.remotes import stall_first_fetch

BROKEN_CONFTEST = 'raise RuntimeError("the base is broken on purpose")\n'


async def _statuses(api: PlatformClient, execution_id: str) -> list[str]:
    events = (await api.get(f"/api/v1/features/{execution_id}/events")).json()["events"]
    return [e["status"] for e in events if e["type"].startswith("status.")]


async def test_a_base_that_cannot_be_tested_fails_before_any_model_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    origin = demo_origin_with(tmp_path, "broken-origin", {"conftest.py": BROKEN_CONFTEST})
    write_script(scripts, greeting_turns())  # would deliver, were the agent ever called
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=feature_request(origin, "untestable"))
        feature = await wait_for(api, "untestable", FINAL)
        statuses = await _statuses(api, "untestable")
        transcript = (await api.get("/api/v1/features/untestable/transcript")).json()["entries"]

    assert feature["status"] == "failed"
    reason = feature["failure_reason"]
    assert reason.startswith("baseline: `"), reason
    assert "cannot run the base commit's tests" in reason
    assert "the base is broken on purpose" in reason  # the output's tail, not just a count
    assert (feature["attempts"], feature["agent_turns"], feature["input_tokens"]) == (0, 0, 0)
    assert transcript == []
    assert statuses == ["checking_out", "preparing", "failed"]
    preparation = feature["preparation"]
    assert preparation["testable"] is False
    assert preparation["baseline"]["passed"] == 0
    assert preparation["untestable"] == reason.splitlines()[0]
    assert "the base is broken on purpose" in preparation["log_tail"]


async def test_a_repository_that_cannot_be_cloned_says_which_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    missing = tmp_path / "no-such-repository"
    plain = tmp_path / "plain-directory"
    plain.mkdir()
    (plain / "README.md").write_text("not a repository\n")
    async with running_platform(tmp_path, monkeypatch, scripts) as api:
        await api.post("/api/v1/features", json=feature_request(f"file://{missing}", "missing"))
        await api.post("/api/v1/features", json=feature_request(str(plain), "plain"))
        gone = await wait_for(api, "missing", FINAL)
        not_git = await wait_for(api, "plain", FINAL)

    assert gone["status"] == not_git["status"] == "failed"
    assert gone["failure_reason"] == (
        f"checkout failed: git clone of file://{missing} failed: {missing} does not exist on this host; "
        "check repository_url: it must name a git repository that exists and that every service can read"
    )
    assert not_git["failure_reason"].startswith(
        f"checkout failed: git clone of {plain} failed: {plain} exists but is not a git repository; "
    )
    assert gone["preparation"] is None


async def test_a_remote_that_stalls_once_is_retried_and_the_feature_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: Path, origin: Path
) -> None:
    write_script(scripts, greeting_turns())
    # Only the worker's fetches stall (its git home); generous enough for a loaded machine, short enough
    # for the test: the first clone is stopped at the timeout, the redelivered step clones again.
    stalled = stall_first_fetch(tmp_path / "data" / "workspaces" / "worker")
    async with running_platform(tmp_path, monkeypatch, scripts, SF_GIT_TIMEOUT_SECONDS="10") as api:
        await api.post("/api/v1/features", json=feature_request(f"file://{origin}", "stalled"))
        feature = await wait_for(api, "stalled", FINAL, timeout=120)
        statuses = await _statuses(api, "stalled")

    assert stalled.exists()
    assert feature["status"] == "delivered", feature["failure_reason"]
    assert statuses[:2] == ["checking_out", "preparing"]
