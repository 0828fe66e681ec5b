"""Webhook deliveries shaped like the forges' own (trimmed to the fields a receiver may read, keeping the
nesting and names), with the headers each forge sends. `delivery(kind, event, payload, secret)` returns
(headers, body) signed the way the forge signs."""

from __future__ import annotations

import json
import uuid
from typing import Any

from service_feature.forges.base import ForgeKind
from service_feature.forges.webhooks import sign

OWNER = "acme"
NAME = "app"


def _github_repository() -> dict[str, Any]:
    return {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": NAME,
        "full_name": f"{OWNER}/{NAME}",
        "private": False,
        "owner": {"login": OWNER, "id": 1, "type": "Organization"},
        "html_url": f"https://github.com/{OWNER}/{NAME}",
        "clone_url": f"https://github.com/{OWNER}/{NAME}.git",
        "ssh_url": f"git@github.com:{OWNER}/{NAME}.git",
        "default_branch": "main",
    }


def _github_user(login: str) -> dict[str, Any]:
    return {"login": login, "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==", "type": "User"}


def _github_issue(labels: list[str], *, pull_request: bool = False) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "url": f"https://api.github.com/repos/{OWNER}/{NAME}/issues/42",
        "html_url": f"https://github.com/{OWNER}/{NAME}/issues/42",
        "id": 1,
        "node_id": "I_kwDOA",
        "number": 42,
        "title": "Greet people by name",
        "user": _github_user("ada"),
        "labels": [{"id": 208045946, "name": name, "color": "f29513", "default": False} for name in labels],
        "state": "open",
        "body": "Add a greet(name) function.",
    }
    if pull_request:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{OWNER}/{NAME}/pulls/42"}
    return issue


def github_issue_labeled(label: str = "service-feature", *, action: str = "labeled") -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action": action,
        "issue": _github_issue([label]),
        "repository": _github_repository(),
        "sender": _github_user("grace"),
    }
    if action == "labeled":
        payload["label"] = {"id": 208045946, "name": label, "color": "f29513"}
    return payload


def github_issue_comment(
    body: str, *, on_pull_request: bool = False, author: str = "grace"
) -> dict[str, Any]:
    return {
        "action": "created",
        "issue": _github_issue(["bug"], pull_request=on_pull_request),
        "comment": {
            "id": 1362020,
            "node_id": "IC_kwDOA",
            "html_url": f"https://github.com/{OWNER}/{NAME}/issues/42#issuecomment-1362020",
            "user": _github_user(author),
            "body": body,
            "author_association": "MEMBER",
        },
        "repository": _github_repository(),
        "sender": _github_user(author),
    }


def github_review_comment(body: str, *, in_reply_to: int | None = None) -> dict[str, Any]:
    comment: dict[str, Any] = {
        "id": 2002,
        "node_id": "PRRC_kwDOA",
        "pull_request_review_id": 3003,
        "diff_hunk": "@@ -1,3 +1,4 @@\n def greet(name):\n-    return 'hi'\n+    return f'Hello, {name}!'",
        "path": "src/greeting.py",
        "commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "original_commit_id": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "user": _github_user("grace"),
        "body": body,
        "line": 3,
        "original_line": 3,
        "side": "RIGHT",
        "html_url": f"https://github.com/{OWNER}/{NAME}/pull/7#discussion_r2002",
    }
    if in_reply_to is not None:
        comment["in_reply_to_id"] = in_reply_to
    return {
        "action": "created",
        "comment": comment,
        "pull_request": {
            "number": 7,
            "state": "open",
            "title": "Greet people by name",
            "head": {"label": f"{OWNER}:feature/greeting", "ref": "feature/greeting", "sha": "6dcb09b"},
            "base": {"label": f"{OWNER}:main", "ref": "main", "sha": "9049f12"},
        },
        "repository": _github_repository(),
        "sender": _github_user("grace"),
    }


def _gitlab_project() -> dict[str, Any]:
    return {
        "id": 15,
        "name": NAME,
        "path_with_namespace": f"{OWNER}/platform/{NAME}",
        "web_url": f"https://gitlab.example.com/{OWNER}/platform/{NAME}",
        "git_ssh_url": f"git@gitlab.example.com:{OWNER}/platform/{NAME}.git",
        "git_http_url": f"https://gitlab.example.com/{OWNER}/platform/{NAME}.git",
        "default_branch": "main",
    }


def _gitlab_user(username: str) -> dict[str, Any]:
    return {"id": 1, "name": username.title(), "username": username, "email": "[REDACTED]"}


def _gitlab_label(title: str) -> dict[str, Any]:
    return {"id": 206, "title": title, "color": "#dc143c", "project_id": 15, "type": "ProjectLabel"}


def gitlab_issue_hook(
    *, action: str = "update", previous: list[str] | None = None, current: list[str] | None = None
) -> dict[str, Any]:
    previous = [] if previous is None else previous
    current = ["service-feature"] if current is None else current
    payload: dict[str, Any] = {
        "object_kind": "issue",
        "event_type": "issue",
        "user": _gitlab_user("grace"),
        "project": _gitlab_project(),
        "object_attributes": {
            "id": 301,
            "iid": 23,
            "title": "Greet people by name",
            "description": "Add a greet(name) function.",
            "state": "opened",
            "action": action,
            "author_id": 51,
            "url": f"https://gitlab.example.com/{OWNER}/platform/{NAME}/-/issues/23",
            "labels": [_gitlab_label(t) for t in current],
        },
        "labels": [_gitlab_label(t) for t in current],
        "repository": {"name": NAME, "url": _gitlab_project()["git_ssh_url"]},
        "changes": {},
    }
    if action == "update":
        payload["changes"]["labels"] = {
            "previous": [_gitlab_label(t) for t in previous],
            "current": [_gitlab_label(t) for t in current],
        }
    return payload


def gitlab_note_on_issue(note: str) -> dict[str, Any]:
    return {
        "object_kind": "note",
        "event_type": "note",
        "user": _gitlab_user("grace"),
        "project_id": 15,
        "project": _gitlab_project(),
        "object_attributes": {
            "id": 1241,
            "note": note,
            "noteable_type": "Issue",
            "author_id": 1,
            "discussion_id": "7f0a5d3a1c2b4e5f60718293a4b5c6d7e8f90123",
            "type": None,
            "action": "create",
            "url": f"https://gitlab.example.com/{OWNER}/platform/{NAME}/-/issues/23#note_1241",
        },
        "issue": {
            "id": 92,
            "iid": 23,
            "title": "Greet people by name",
            "description": "Add a greet(name) function.",
            "labels": [_gitlab_label("bug")],
            "state": "opened",
        },
    }


def gitlab_note_on_merge_request(note: str, *, action: str = "create") -> dict[str, Any]:
    return {
        "object_kind": "note",
        "event_type": "note",
        "user": _gitlab_user("grace"),
        "project_id": 15,
        "project": _gitlab_project(),
        "object_attributes": {
            "id": 1244,
            "note": note,
            "noteable_type": "MergeRequest",
            "author_id": 1,
            "discussion_id": "0b6f3e9f4c2a1d8e7b5a6c4d3e2f1a0b9c8d7e6f",
            "type": "DiffNote",
            "action": action,
            "position": {
                "base_sha": "9049f12",
                "start_sha": "9049f12",
                "head_sha": "6dcb09b",
                "old_path": "src/greeting.py",
                "new_path": "src/greeting.py",
                "position_type": "text",
                "old_line": None,
                "new_line": 3,
            },
            "url": f"https://gitlab.example.com/{OWNER}/platform/{NAME}/-/merge_requests/7#note_1244",
        },
        "merge_request": {
            "id": 7007,
            "iid": 7,
            "title": "Greet people by name",
            "source_branch": "feature/greeting",
            "target_branch": "main",
            "state": "opened",
        },
    }


def _gitea_repository() -> dict[str, Any]:
    return {
        "id": 1,
        "owner": {"id": 1, "login": OWNER, "username": OWNER},
        "name": NAME,
        "full_name": f"{OWNER}/{NAME}",
        "html_url": f"https://gitea.example.com/{OWNER}/{NAME}",
        "clone_url": f"https://gitea.example.com/{OWNER}/{NAME}.git",
        "ssh_url": f"git@gitea.example.com:{OWNER}/{NAME}.git",
        "default_branch": "main",
    }


def _gitea_user(login: str) -> dict[str, Any]:
    return {"id": 2, "login": login, "username": login, "full_name": login.title(), "email": "[REDACTED]"}


def _gitea_issue(labels: list[str], *, pull: bool = False) -> dict[str, Any]:
    return {
        "id": 11,
        "url": f"https://gitea.example.com/api/v1/repos/{OWNER}/{NAME}/issues/5",
        "html_url": f"https://gitea.example.com/{OWNER}/{NAME}/issues/5",
        "number": 5,
        "user": _gitea_user("ada"),
        "title": "Greet people by name",
        "body": "Add a greet(name) function.",
        "labels": [{"id": 3, "name": name, "color": "e11d21", "description": ""} for name in labels],
        "state": "open",
        "pull_request": {"merged": False, "merged_at": None} if pull else None,
    }


def _gitea_pull_request() -> dict[str, Any]:
    return {
        "id": 21,
        "number": 7,
        "title": "Greet people by name",
        "state": "open",
        "html_url": f"https://gitea.example.com/{OWNER}/{NAME}/pulls/7",
        "head": {"label": "feature/greeting", "ref": "feature/greeting", "sha": "6dcb09b", "repo_id": 1},
        "base": {"label": "main", "ref": "main", "sha": "9049f12", "repo_id": 1},
    }


def gitea_issue_label_updated(
    labels: list[str] | None = None, *, added: list[str] | None = None, action: str = "label_updated"
) -> dict[str, Any]:
    labels = ["service-feature"] if labels is None else labels
    payload: dict[str, Any] = {
        "action": action,
        "number": 5,
        "issue": _gitea_issue(labels),
        "repository": _gitea_repository(),
        "sender": _gitea_user("grace"),
        "commit_id": "",
    }
    if added is not None:
        payload["changes"] = {"added_labels": [{"id": 3, "name": n} for n in added], "removed_labels": []}
    return payload


def gitea_issue_comment(body: str, *, on_pull_request: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "action": "created",
        "issue": _gitea_issue(["bug"], pull=on_pull_request),
        "comment": {
            "id": 77,
            "html_url": f"https://gitea.example.com/{OWNER}/{NAME}/issues/5#issuecomment-77",
            "pull_request_url": "",
            "issue_url": f"https://gitea.example.com/{OWNER}/{NAME}/issues/5",
            "user": _gitea_user("grace"),
            "body": body,
        },
        "repository": _gitea_repository(),
        "sender": _gitea_user("grace"),
        "is_pull": on_pull_request,
    }
    if on_pull_request:
        payload["pull_request"] = _gitea_pull_request()
    return payload


def gitea_review(content: str) -> dict[str, Any]:
    return {
        "action": "reviewed",
        "number": 7,
        "pull_request": _gitea_pull_request(),
        "requested_reviewer": None,
        "repository": _gitea_repository(),
        "sender": _gitea_user("grace"),
        "commit_id": "",
        "review": {"type": "pull_request_review_comment", "content": content},
    }


_EVENT_HEADER = {
    ForgeKind.github: "X-GitHub-Event",
    ForgeKind.gitlab: "X-Gitlab-Event",
    ForgeKind.gitea: "X-Gitea-Event",
}
_DELIVERY_HEADER = {
    ForgeKind.github: "X-GitHub-Delivery",
    ForgeKind.gitlab: "X-Gitlab-Event-UUID",
    ForgeKind.gitea: "X-Gitea-Delivery",
}


def delivery(
    kind: ForgeKind, event: str, payload: Any, secret: str, *, delivery_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        _EVENT_HEADER[kind]: event,
        _DELIVERY_HEADER[kind]: delivery_id or str(uuid.uuid4()),
        **sign(kind, body, secret),
    }
    if kind is ForgeKind.gitea:
        headers["X-Gitea-Event-Type"] = (
            "pull_request_review_comment" if event == "pull_request_comment" else event
        )
    return headers, body
