"""Forge webhooks end to end: a labelled issue on a local server speaking the forge's wire format
becomes a delivered pull request whose body holds the tests and the review; a review comment mentioning
the platform on that pull request becomes a second commit on its branch and a reply in its thread. Then
what must not start a feature: a wrong secret, a replayed delivery, another event, an oversized body, a
user or repository not allowed, the kill switch."""

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_feature.forges.base import ForgeKind
from service_feature.forges.webhooks import WebhookConfig, receive
from service_feature.gateway.webhooks import trigger_id
from tests.e2e.test_pull_request_delivery import PUSH_TOKEN, REPOSITORY, _environment, _trust_everywhere
from tests.support import forges_webhooks as payloads
from tests.support.forges import SERVERS, ForgeServer
from tests.support.forges_webhooks import delivery
from tests.support.git_https import GitServer, git_https_server
from tests.support.platform import (
    FINAL,
    GREETING,
    GREETING_TEST,
    PlatformClient,
    call,
    running_platform,
    turn,
    wait_for,
    write_script,
)

SECRET = "webhook-secret-0123456789"
ISSUE_EVENTS = {
    ForgeKind.github: ("issues", payloads.github_issue_labeled),
    ForgeKind.gitlab: ("Issue Hook", payloads.gitlab_issue_hook),
    ForgeKind.gitea: ("issues", lambda: payloads.gitea_issue_label_updated(added=["service-feature"])),
}


@pytest.fixture
async def git_server(tmp_path: Path, origin: Path) -> AsyncIterator[GitServer]:
    root = tmp_path / "git"
    (root / "acme").mkdir(parents=True)
    shutil.copytree(origin, root / f"{REPOSITORY}.git")
    with git_https_server(root, username="x-access-token", token=PUSH_TOKEN) as server:
        yield server


def _greeting_script(scripts: Path) -> None:
    write_script(
        scripts,
        [
            turn(
                call("write_file", path="src/demo_app/greeting.py", content=GREETING),
                call("write_file", path="tests/test_greeting.py", content=GREETING_TEST),
            ),
            turn(call("finish", summary="added greet() with a test")),
        ],
    )


def _point_at(payload: dict[str, Any], kind: ForgeKind, clone_url: str) -> dict[str, Any]:
    """The payload as the forge serving `clone_url` would send it (repository path acme/app)."""
    if kind is ForgeKind.gitlab:
        payload["project"].update(path_with_namespace=REPOSITORY, git_http_url=clone_url)
    else:
        payload["repository"].update(full_name=REPOSITORY, clone_url=clone_url)
    return payload


def _review_comment(kind: ForgeKind, body: str, number: int, head: str, thread: str) -> tuple[str, Any]:
    if kind is ForgeKind.github:
        payload = payloads.github_review_comment(body)
        payload["comment"]["id"] = int(thread)
        payload["pull_request"].update(number=number, head={"ref": head, "label": f"acme:{head}", "sha": "0"})
        return "pull_request_review_comment", payload
    if kind is ForgeKind.gitlab:
        payload = payloads.gitlab_note_on_merge_request(body)
        payload["object_attributes"]["discussion_id"] = thread
        payload["merge_request"].update(iid=number, source_branch=head)
        return "Note Hook", payload
    payload = payloads.gitea_issue_comment(body, on_pull_request=True)
    payload["comment"]["id"] = int(thread)
    payload["pull_request"].update(number=number, head={"ref": head, "label": head, "sha": "0", "repo_id": 1})
    return "issue_comment", payload


async def _post(
    api: PlatformClient, kind: ForgeKind, event: str, payload: Any, **options: Any
) -> httpx.Response:
    headers, body = delivery(kind, event, payload, options.pop("secret", SECRET), **options)
    async with httpx.AsyncClient(base_url=str(api.base_url), timeout=30) as anonymous:  # no API key
        return await anonymous.post(f"/api/v1/webhooks/{kind.value}", content=body, headers=headers)


def _webhook_environment(
    kind: ForgeKind, forge: ForgeServer, git_server: GitServer, **extra: str
) -> dict[str, str]:
    return _environment(
        forge,
        git_server,
        DELIVERY_MODE="branch",  # the webhook asks for a pull request whatever the default
        **{
            f"SF_WEBHOOK_SECRET_{kind.value.upper()}": SECRET,
            "SF_WEBHOOK_REPOSITORIES": "acme/*",
            "SF_WEBHOOK_USERS": "grace",
            **extra,
        },
    )


@pytest.mark.parametrize("kind", list(ForgeKind), ids=str)
async def test_a_labelled_issue_becomes_a_pull_request_and_a_review_comment_a_second_commit(
    kind: ForgeKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_server: GitServer, scripts: Path
) -> None:
    _greeting_script(scripts)
    _trust_everywhere(tmp_path, git_server)
    clone_url = git_server.repository_url(REPOSITORY)
    async with SERVERS[kind]() as forge:
        forge.add_repository(REPOSITORY)
        async with running_platform(
            tmp_path, monkeypatch, scripts, **_webhook_environment(kind, forge, git_server)
        ) as api:
            event, build = ISSUE_EVENTS[kind]
            issue = _point_at(build(), kind, clone_url)
            accepted = await _post(api, kind, event, issue, delivery_id="delivery-1")
            assert accepted.status_code == 202, accepted.text
            execution_id = accepted.json()["execution_id"]
            feature = await wait_for(api, execution_id, FINAL, timeout=120)
            assert feature["status"] == "delivered", feature["failure_reason"]
            assert feature["title"] == "Greet people by name"

            [pull] = forge.pull_requests(REPOSITORY)
            assert pull.head == f"feature/{execution_id}"
            assert "Add a greet(name) function." in pull.body
            assert "## Tests" in pull.body
            assert "Decision: **approve**" in pull.body

            replayed = await _post(api, kind, event, issue, delivery_id="delivery-1")
            assert replayed.status_code == 200
            assert replayed.json() == {"status": "duplicate", "execution_id": execution_id}

            # A review comment mentioning the platform: a follow-up commit on the branch and a reply.
            thread = forge.add_review_comment(
                REPOSITORY, pull.number, "@service-feature also greet in French"
            )
            event, comment = _review_comment(
                kind, "@service-feature also greet in French", pull.number, pull.head, thread
            )
            comment = _point_at(comment, kind, clone_url)
            follow_up_id = _feature_id(kind, event, comment, "delivery-2")
            write_script(scripts, _french_turns(), name=follow_up_id)
            answered = await _post(api, kind, event, comment, delivery_id="delivery-2")
            assert answered.status_code == 202, answered.text
            assert answered.json()["execution_id"] == follow_up_id
            follow_up = await wait_for(api, follow_up_id, FINAL, timeout=120)
            assert follow_up["status"] == "delivered", follow_up["failure_reason"]
            assert follow_up["delivered_branch"] == pull.head
            assert len(forge.pull_requests(REPOSITORY)) == 1
            replies = [c for c in forge.comments(REPOSITORY, pull.number) if "Pushed " in c.body]
            assert len(replies) == 1
            assert follow_up["delivered_commit"][:12] in replies[0].body


def _feature_id(kind: ForgeKind, event: str, payload: Any, delivery_id: str) -> str:
    """The feature a delivery will start, known before it is sent (its script is named after it)."""
    headers, body = delivery(kind, event, payload, SECRET, delivery_id=delivery_id)
    trigger = receive(kind, headers, body, WebhookConfig(SECRET, "service-feature", "service-feature"))
    assert trigger is not None
    return trigger_id(trigger)


def _french_turns() -> list[dict[str, object]]:
    bonjour = 'def bonjour(name: str) -> str:\n    return f"Bonjour, {name}!"\n'
    test = "from demo_app.french import bonjour\n\n\ndef test_bonjour() -> None:\n"
    test += '    assert bonjour("Ada") == "Bonjour, Ada!"\n'
    return [
        turn(
            call("write_file", path="src/demo_app/french.py", content=bonjour),
            call("write_file", path="tests/test_french.py", content=test),
        ),
        turn(call("finish", summary="added bonjour()")),
    ]


async def test_what_must_not_start_a_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_server: GitServer, scripts: Path
) -> None:
    kind = ForgeKind.github
    _greeting_script(scripts)
    clone_url = git_server.repository_url(REPOSITORY)
    issue = _point_at(payloads.github_issue_labeled(), kind, clone_url)
    async with SERVERS[kind]() as forge:
        env = _webhook_environment(kind, forge, git_server, SF_MAX_BODY_BYTES="4096")
        async with running_platform(tmp_path, monkeypatch, scripts, **env) as api:
            wrong = await _post(api, kind, "issues", issue, secret="not-the-secret")
            assert wrong.status_code == 401
            headers, body = delivery(kind, "issues", issue, SECRET)
            tampered = body.replace(b"Greet people", b"Grant admin to")
            async with httpx.AsyncClient(base_url=str(api.base_url), timeout=30) as anonymous:
                forged = await anonymous.post("/api/v1/webhooks/github", content=tampered, headers=headers)
                unsigned = await anonymous.post(
                    "/api/v1/webhooks/github",
                    content=body,
                    headers={k: v for k, v in headers.items() if k != "X-Hub-Signature-256"},
                )
                off = await anonymous.post("/api/v1/webhooks/gitlab", content=body, headers=headers)
            assert forged.status_code == 401
            assert unsigned.status_code == 401
            assert off.status_code == 404
            assert "SF_WEBHOOK_SECRET_GITLAB" in off.json()["detail"]

            other_event = await _post(
                api, kind, "star", {"action": "created", "repository": issue["repository"]}
            )
            assert other_event.status_code == 200
            assert other_event.json()["status"] == "ignored"
            oversized = dict(issue, padding="x" * 8000)
            assert (await _post(api, kind, "issues", oversized)).status_code == 413

            stranger = dict(issue, sender={"login": "mallory", "id": 9, "type": "User"})
            refused = await _post(api, kind, "issues", stranger)
            assert refused.status_code == 403
            assert "SF_WEBHOOK_USERS" in refused.json()["detail"]
            elsewhere = _point_at(payloads.github_issue_labeled(), kind, clone_url)
            elsewhere["repository"]["full_name"] = "evil/app"
            refused = await _post(api, kind, "issues", elsewhere)
            assert refused.status_code == 403
            assert "SF_WEBHOOK_REPOSITORIES" in refused.json()["detail"]

            engaged = await api.post("/api/v1/killswitch/engage", json={"reason": "incident"})
            assert engaged.status_code == 200, engaged.text
            stopped = await _post(api, kind, "issues", issue)
            assert stopped.status_code == 503
            assert stopped.headers["Retry-After"]
            assert (await api.get("/api/v1/features")).json()["total"] == 0
            await asyncio.sleep(0)
