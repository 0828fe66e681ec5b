"""Pull-request delivery end to end: the platform pushes over HTTPS to a git server and opens the pull
request on a local server that speaks the forge's REST wire format (GitHub, GitLab, Gitea), through the
same forge clients the product uses. A held feature opens as a draft and becomes ready on approve; a
rejected one is closed; a forge that answers 5xx is retried and the feature is not lost; a 401 ends the
feature with a reason naming the forge and the setting."""

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service_feature.forges.base import ForgeKind
from tests.support.forges import SERVERS, TEST_TOKEN, ForgeServer
from tests.support.git_https import GitServer, git_https_server
from tests.support.platform import (
    FINAL,
    GREETING,
    GREETING_TEST,
    PlatformClient,
    call,
    feature_request,
    running_platform,
    turn,
    wait_for,
    write_script,
)

REPOSITORY = "acme/app"
PUSH_TOKEN = "push-token-" + "0123456789" * 3


def _turns(*, outside_targets: bool = False) -> list[dict[str, object]]:
    writes = [
        call("write_file", path="src/demo_app/greeting.py", content=GREETING),
        call("write_file", path="tests/test_greeting.py", content=GREETING_TEST),
    ]
    if outside_targets:  # a policy finding: with MAX_RISK_SCORE=0 the reviewer holds it for a person
        writes.append(call("write_file", path="README.md", content="# demo-app\n\nNow with greetings.\n"))
    return [turn(*writes), turn(call("finish", summary="added greet() with a test"))]


@pytest.fixture
async def git_server(tmp_path: Path, origin: Path) -> AsyncIterator[GitServer]:
    root = tmp_path / "git"
    (root / "acme").mkdir(parents=True)
    shutil.copytree(origin, root / f"{REPOSITORY}.git")
    with git_https_server(root, username="x-access-token", token=PUSH_TOKEN) as server:
        yield server


def _trust_everywhere(tmp_path: Path, git_server: GitServer) -> None:
    for service in ("gateway", "worker", "reviewer", "executor"):
        git_server.trust(tmp_path / "data" / "workspaces" / service)


def _environment(forge: ForgeServer, git_server: GitServer, **extra: str) -> dict[str, str]:
    account = {
        "kind": forge.kind.value,
        "host": git_server.url.removeprefix("https://"),
        "api_url": forge.api_url,
        "token": TEST_TOKEN,
    }
    return {
        "DELIVERY_MODE": "pull_request",
        "SF_FORGES_JSON": json.dumps([account]),
        "REPOSITORY_ALLOWLIST": "127.0.0.1",
        "GIT_PUSH_USERNAME": "x-access-token",
        "GIT_PUSH_TOKEN": PUSH_TOKEN,
        "SF_PUBLIC_URL": "https://features.example",
        **extra,
    }


async def _submit(api: PlatformClient, git_server: GitServer, execution_id: str) -> dict[str, Any]:
    request = feature_request(git_server.repository_url(REPOSITORY), execution_id)
    response = await api.post("/api/v1/features", json=request)
    assert response.status_code == 202, response.text
    return await wait_for(api, execution_id, FINAL, timeout=120)


async def _follow_up(
    api: PlatformClient, git_server: GitServer, scripts: Path, of: str, number: int, thread: str
) -> dict[str, Any]:
    execution_id = f"{of}-followup"
    bonjour = 'def bonjour(name: str) -> str:\n    return f"Bonjour, {name}!"\n'
    test = "from demo_app.french import bonjour\n\n\ndef test_bonjour() -> None:\n"
    test += '    assert bonjour("Ada") == "Bonjour, Ada!"\n'
    turns = [
        turn(
            call("write_file", path="src/demo_app/french.py", content=bonjour),
            call("write_file", path="tests/test_french.py", content=test),
        ),
        turn(call("finish", summary="added bonjour()")),
    ]
    write_script(scripts, turns, name=execution_id)
    request = feature_request(git_server.repository_url(REPOSITORY), execution_id, branch=f"feature/{of}")
    request["follow_up"] = {"pull_request": number, "thread_id": thread}
    response = await api.post("/api/v1/features", json=request)
    assert response.status_code == 202, response.text
    return await wait_for(api, execution_id, FINAL, timeout=120)


def _parent(git_server: GitServer, commit: str) -> str:
    import subprocess

    bare = git_server.root / f"{REPOSITORY}.git"
    shown = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", f"{commit}^"], capture_output=True, text=True, check=True
    )
    return shown.stdout.strip()


def _branch(git_server: GitServer, execution_id: str) -> str:
    import subprocess

    bare = git_server.root / f"{REPOSITORY}.git"
    shown = subprocess.run(
        ["git", "--git-dir", str(bare), "rev-parse", "--verify", "-q", f"feature/{execution_id}"],
        capture_output=True,
        text=True,
    )
    return shown.stdout.strip()


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
async def test_an_approved_feature_becomes_a_pull_request_with_tests_and_review(
    kind: ForgeKind,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    git_server: GitServer,
    scripts: Path,
) -> None:
    write_script(scripts, _turns())
    _trust_everywhere(tmp_path, git_server)
    async with SERVERS[kind]() as forge:
        forge.add_repository(REPOSITORY)
        forge.fail_next(502, times=2)  # the forge is briefly down: retried, not lost
        async with running_platform(tmp_path, monkeypatch, scripts, **_environment(forge, git_server)) as api:
            feature = await _submit(api, git_server, "pr1")
            assert feature["status"] == "delivered", feature["failure_reason"]
            pulls = forge.pull_requests(REPOSITORY)
            assert len(pulls) == 1
            pull = pulls[0]
            assert feature["pull_request_url"]
            assert pull.head == "feature/pr1"
            assert pull.base == "main"
            assert not pull.draft
            assert pull.state == "open"
            assert "## Tests" in pull.body
            assert "## Review" in pull.body
            assert "Decision: **approve**" in pull.body
            assert "[transcript](https://features.example/features/pr1)" in pull.body
            assert "service-feature" in pull.labels
            assert any(label.startswith("risk:") for label in pull.labels)
            assert _branch(git_server, "pr1") == feature["delivered_commit"]
            assert forge.faults_pending == 0

            # A review comment on the pull request becomes a follow-up on the same branch, answered in place.
            thread = forge.add_review_comment(REPOSITORY, pull.number, "Also greet in French, please")
            follow_up = await _follow_up(api, git_server, scripts, "pr1", pull.number, thread)
            assert follow_up["status"] == "delivered", follow_up["failure_reason"]
            assert follow_up["delivered_branch"] == "feature/pr1"
            assert _branch(git_server, "pr1") == follow_up["delivered_commit"]
            assert _parent(git_server, follow_up["delivered_commit"]) == feature["delivered_commit"]
            assert len(forge.pull_requests(REPOSITORY)) == 1  # the same pull request, one commit more
            replies = [c for c in forge.comments(REPOSITORY, pull.number) if "Pushed" in c.body]
            assert len(replies) == 1
            assert follow_up["delivered_commit"][:12] in replies[0].body
            assert "added bonjour()" in replies[0].body
            transcript = (await api.get("/api/v1/features/pr1-followup/transcript")).json()["entries"]
            task = next(entry["content"]["text"] for entry in transcript if entry["kind"] == "task")
            assert "<review_thread>\n@reviewer:\nAlso greet in French, please" in task  # the thread so far


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
async def test_a_held_feature_opens_as_a_draft_and_is_made_ready_on_approve(
    kind: ForgeKind,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    git_server: GitServer,
    scripts: Path,
) -> None:
    write_script(scripts, _turns(outside_targets=True))
    _trust_everywhere(tmp_path, git_server)
    async with SERVERS[kind]() as forge:
        forge.add_repository(REPOSITORY)
        env = _environment(forge, git_server, MAX_RISK_SCORE="0")
        async with running_platform(tmp_path, monkeypatch, scripts, **env) as api:
            for execution_id in ("held1", "held2"):
                feature = await _submit(api, git_server, execution_id)
                assert feature["status"] == "awaiting_approval", feature["failure_reason"]
            drafts = await _wait_for_pulls(forge, 2)
            assert all(pull.draft for pull in drafts)
            assert all("held this change for a person" in pull.body for pull in drafts)

            approved = await api.post("/api/v1/features/held1/approve", json={"reason": "fine"})
            assert approved.status_code == 200
            assert (await wait_for(api, "held1", {"delivered", "failed"}))["status"] == "delivered"
            rejected = await api.post("/api/v1/features/held2/reject", json={"reason": "no README edits"})
            assert rejected.status_code == 200
            await _wait_for_closed(forge, "feature/held2")

            by_head = {pull.head: pull for pull in forge.pull_requests(REPOSITORY)}
            assert len(by_head) == 2  # the draft was made ready, not opened again
            ready = by_head["feature/held1"]
            assert not ready.draft
            assert ready.state == "open"
            assert "held this change" not in ready.body
            assert by_head["feature/held2"].state == "closed"
            closing = forge.comments(REPOSITORY, by_head["feature/held2"].number)
            assert any("no README edits" in comment.body for comment in closing)


async def test_a_refused_token_fails_the_feature_naming_the_forge_and_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_server: GitServer, scripts: Path
) -> None:
    write_script(scripts, _turns())
    _trust_everywhere(tmp_path, git_server)
    async with SERVERS[ForgeKind.github]() as forge:
        forge.add_repository(REPOSITORY)
        forge.fail_next(401, times=100)
        async with running_platform(tmp_path, monkeypatch, scripts, **_environment(forge, git_server)) as api:
            feature = await _submit(api, git_server, "pr401")
            assert feature["status"] == "failed"
            reason = feature["failure_reason"]
            assert "SF_FORGES_JSON" in reason
            assert forge.api_url in reason or "github" in reason.lower()
            assert TEST_TOKEN not in reason


async def _wait_for_pulls(forge: ForgeServer, count: int) -> list[Any]:
    import asyncio

    async with asyncio.timeout(60):
        while len(pulls := forge.pull_requests(REPOSITORY)) < count:
            await asyncio.sleep(0.1)
    return pulls


async def _wait_for_closed(forge: ForgeServer, head: str) -> None:
    import asyncio

    async with asyncio.timeout(60):
        while not any(p.head == head and p.state == "closed" for p in forge.pull_requests(REPOSITORY)):
            await asyncio.sleep(0.1)
