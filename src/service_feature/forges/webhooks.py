"""Incoming forge webhooks: verified, then read into the two things the platform acts on.

`receive(kind, headers, body, config)` checks the size, the signature (GitHub `X-Hub-Signature-256`, GitLab
`X-Gitlab-Token`, Gitea `X-Gitea-Signature` / Forgejo `X-Forgejo-Signature`) and the JSON, and returns

- an `IssueTrigger` for an issue given the configured label (labelled, or opened with it) or an issue
  comment mentioning the configured handle;
- a `ReviewCommentTrigger` for a comment on a pull request (merge request) mentioning the handle;
- None for every other event or action, which the gateway acknowledges (2xx) and ignores: refusing would
  only make the forge redeliver something the platform does not want.

It raises `WebhookRejected(status_code, reason)` for what must not be acknowledged: a missing or wrong
signature (401), a body over the limit (413), a body that is not JSON or not the event's shape (400).

Pure functions, no I/O: the gateway owns the HTTP side and the de-duplication by `delivery_id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from service_feature.forges.base import ForgeKind

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class WebhookRejected(Exception):
    """A delivery the gateway answers with `status_code` and does not act on."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"{status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason


@dataclass(frozen=True)
class WebhookConfig:
    """What one forge's webhook is checked against: the shared secret, the label that asks for a feature,
    and the handle (without `@`) that people mention to address the platform."""

    secret: str = field(repr=False)
    label: str
    handle: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


@dataclass(frozen=True)
class IssueTrigger:
    """An issue that asks for a feature. `action` is "labeled", "opened" (opened with the label) or
    "mentioned" (a comment on it mentioned the handle; `comment` and `comment_id` are that comment)."""

    forge: ForgeKind
    delivery_id: str
    repository: str
    clone_url: str
    default_branch: str
    number: int
    title: str
    body: str
    author: str  # whoever asked: the one who labelled, opened or commented
    labels: tuple[str, ...]
    action: str
    comment: str | None = None
    comment_id: str | None = None


@dataclass(frozen=True)
class ReviewCommentTrigger:
    """A comment on a pull request that mentions the handle.

    `thread_id` is what `Forge.reply_to_review_comment` answers in (GitHub: the thread's first comment id,
    GitLab: the discussion id, Gitea: the comment id); None when the forge named none (a Gitea review
    summary), then the answer is a plain comment. `path`, `line` and `diff_hunk` are set for comments on
    the diff where the forge sends them."""

    forge: ForgeKind
    delivery_id: str
    repository: str
    clone_url: str
    number: int
    head: str
    base: str
    thread_id: str | None
    body: str
    author: str
    path: str | None = None
    line: int | None = None
    diff_hunk: str | None = None


Trigger = IssueTrigger | ReviewCommentTrigger


# ------------------------------------------------------------------------------------------- verification


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check_size(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise WebhookRejected(413, f"body of {len(body)} bytes is over the {limit}-byte limit")


def _verify_github(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    signature = headers.get("x-hub-signature-256")
    if not signature:
        raise WebhookRejected(401, "missing X-Hub-Signature-256")
    expected = "sha256=" + _hmac_hex(secret, body)
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        raise WebhookRejected(401, "X-Hub-Signature-256 does not match the body")


def _verify_gitlab(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    token = headers.get("x-gitlab-token")
    if not token:
        raise WebhookRejected(401, "missing X-Gitlab-Token")
    if not hmac.compare_digest(token.encode(), secret.encode()):
        raise WebhookRejected(401, "X-Gitlab-Token is not the configured secret")


def _verify_gitea(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    signature = headers.get("x-gitea-signature") or headers.get("x-forgejo-signature")
    if not signature:
        raise WebhookRejected(401, "missing X-Gitea-Signature / X-Forgejo-Signature")
    if not hmac.compare_digest(signature.strip().lower().encode(), _hmac_hex(secret, body).encode()):
        raise WebhookRejected(401, "X-Gitea-Signature does not match the body")


_VERIFIERS: dict[ForgeKind, Callable[[Mapping[str, str], bytes, str], None]] = {
    ForgeKind.github: _verify_github,
    ForgeKind.gitlab: _verify_gitlab,
    ForgeKind.gitea: _verify_gitea,
}


def verify(
    kind: ForgeKind,
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Raise WebhookRejected unless `body` is within the limit and signed with `secret`."""
    _check_size(body, max_body_bytes)
    if not secret:
        raise WebhookRejected(401, "no webhook secret is configured: every delivery is refused")
    _VERIFIERS[kind](_lower(headers), body, secret)


# ------------------------------------------------------------------------------------------- payload shapes


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _User(_Model):
    login: str = ""
    username: str = ""

    @property
    def name(self) -> str:
        return self.login or self.username


class _Label(_Model):
    name: str = ""
    title: str = ""  # GitLab

    @property
    def text(self) -> str:
        return self.name or self.title


class _Repository(_Model):
    full_name: str
    clone_url: str
    default_branch: str = "main"


class _Issue(_Model):
    number: int
    title: str = ""
    body: str | None = None
    user: _User = _User()
    labels: list[_Label] = []
    pull_request: dict[str, Any] | None = None


class _Comment(_Model):
    id: int
    body: str = ""
    user: _User = _User()
    path: str | None = None
    line: int | None = None
    original_line: int | None = None
    diff_hunk: str | None = None
    in_reply_to_id: int | None = None


class _Ref(_Model):
    ref: str


class _PullRequest(_Model):
    number: int
    head: _Ref
    base: _Ref


class _GitHubIssues(_Model):
    action: str
    issue: _Issue
    repository: _Repository
    sender: _User
    label: _Label | None = None


class _GitHubIssueComment(_Model):
    action: str
    issue: _Issue
    comment: _Comment
    repository: _Repository
    sender: _User


class _GitHubReviewComment(_Model):
    action: str
    pull_request: _PullRequest
    comment: _Comment
    repository: _Repository


class _GitLabProject(_Model):
    path_with_namespace: str
    git_http_url: str
    default_branch: str | None = "main"


class _GitLabIssueAttributes(_Model):
    iid: int
    title: str = ""
    description: str | None = None
    action: str | None = None


class _GitLabLabelChange(_Model):
    previous: list[_Label] = []
    current: list[_Label] = []


class _GitLabChanges(_Model):
    labels: _GitLabLabelChange | None = None


class _GitLabIssueHook(_Model):
    user: _User
    project: _GitLabProject
    object_attributes: _GitLabIssueAttributes
    labels: list[_Label] = []
    changes: _GitLabChanges = _GitLabChanges()


class _GitLabPosition(_Model):
    new_path: str | None = None
    old_path: str | None = None
    new_line: int | None = None
    old_line: int | None = None


class _GitLabDiff(_Model):
    diff: str | None = None


class _GitLabNoteAttributes(_Model):
    id: int
    note: str = ""
    noteable_type: str
    discussion_id: str | None = None
    action: str | None = None
    position: _GitLabPosition | None = None
    st_diff: _GitLabDiff | None = None


class _GitLabNoteIssue(_Model):
    iid: int
    title: str = ""
    description: str | None = None
    labels: list[_Label] = []


class _GitLabNoteMergeRequest(_Model):
    iid: int
    source_branch: str
    target_branch: str


class _GitLabNoteHook(_Model):
    user: _User
    project: _GitLabProject
    object_attributes: _GitLabNoteAttributes
    issue: _GitLabNoteIssue | None = None
    merge_request: _GitLabNoteMergeRequest | None = None


class _GiteaLabelChanges(_Model):
    added_labels: list[_Label] | None = None


class _GiteaIssues(_Model):
    action: str
    issue: _Issue
    repository: _Repository
    sender: _User
    changes: _GiteaLabelChanges | None = None


class _GiteaIssueComment(_Model):
    action: str
    issue: _Issue
    comment: _Comment
    repository: _Repository
    sender: _User
    is_pull: bool = False
    pull_request: _PullRequest | None = None


class _GiteaReview(_Model):
    type: str = ""
    content: str = ""


class _GiteaReviewed(_Model):
    action: str
    pull_request: _PullRequest
    repository: _Repository
    sender: _User
    review: _GiteaReview | None = None


# ------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Delivery:
    """What every parser needs besides the payload."""

    kind: ForgeKind
    delivery_id: str
    config: WebhookConfig

    def mentioned(self, text: str | None, author: str) -> bool:
        """`@handle` in `text`, by someone other than the platform itself (its own replies quote it)."""
        if not text or author.lower() == self.config.handle.lower():
            return False
        pattern = rf"(?<![\w@/.-])@{re.escape(self.config.handle)}(?![\w-])"
        return re.search(pattern, text, re.IGNORECASE) is not None


M = TypeVar("M", bound=_Model)


def _model(model: type[M], payload: Any) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        fields = ", ".join(".".join(str(part) for part in problem["loc"]) for problem in error.errors()[:5])
        raise WebhookRejected(
            400, f"payload is not a {model.__name__.lstrip('_')} event ({fields})"
        ) from None


def _issue_trigger(
    delivery: _Delivery,
    repository: _Repository,
    issue: _Issue,
    author: str,
    action: str,
    comment: _Comment | None = None,
) -> IssueTrigger:
    return IssueTrigger(
        forge=delivery.kind,
        delivery_id=delivery.delivery_id,
        repository=repository.full_name,
        clone_url=repository.clone_url,
        default_branch=repository.default_branch,
        number=issue.number,
        title=issue.title,
        body=issue.body or "",
        author=author,
        labels=tuple(label.text for label in issue.labels),
        action=action,
        comment=comment.body if comment else None,
        comment_id=str(comment.id) if comment else None,
    )


def _github_issues(delivery: _Delivery, payload: Any) -> Trigger | None:
    event = _model(_GitHubIssues, payload)
    wanted = delivery.config.label
    if event.action == "labeled" and event.label is not None and event.label.text == wanted:
        return _issue_trigger(delivery, event.repository, event.issue, event.sender.name, "labeled")
    if event.action == "opened" and any(label.text == wanted for label in event.issue.labels):
        return _issue_trigger(delivery, event.repository, event.issue, event.sender.name, "opened")
    return None


def _github_issue_comment(delivery: _Delivery, payload: Any) -> Trigger | None:
    event = _model(_GitHubIssueComment, payload)
    # A comment on a pull request's conversation comes here too, without the branches: not a trigger.
    if event.action != "created" or event.issue.pull_request is not None:
        return None
    author = event.comment.user.name or event.sender.name
    if not delivery.mentioned(event.comment.body, author):
        return None
    return _issue_trigger(delivery, event.repository, event.issue, author, "mentioned", event.comment)


def _github_review_comment(delivery: _Delivery, payload: Any) -> Trigger | None:
    event = _model(_GitHubReviewComment, payload)
    comment = event.comment
    if event.action != "created" or not delivery.mentioned(comment.body, comment.user.name):
        return None
    # GitHub answers replies to the thread's first comment only.
    thread = comment.in_reply_to_id or comment.id
    return ReviewCommentTrigger(
        forge=delivery.kind,
        delivery_id=delivery.delivery_id,
        repository=event.repository.full_name,
        clone_url=event.repository.clone_url,
        number=event.pull_request.number,
        head=event.pull_request.head.ref,
        base=event.pull_request.base.ref,
        thread_id=str(thread),
        body=comment.body,
        author=comment.user.name,
        path=comment.path,
        line=comment.line if comment.line is not None else comment.original_line,
        diff_hunk=comment.diff_hunk,
    )


def _gitlab_repository(project: _GitLabProject) -> _Repository:
    return _Repository(
        full_name=project.path_with_namespace,
        clone_url=project.git_http_url,
        default_branch=project.default_branch or "main",
    )


def _gitlab_issue(delivery: _Delivery, payload: Any) -> Trigger | None:
    event = _model(_GitLabIssueHook, payload)
    wanted = delivery.config.label
    attributes = event.object_attributes
    labels = [label.text for label in event.labels]
    action: str | None = None
    if attributes.action == "open" and wanted in labels:
        action = "opened"
    elif attributes.action == "update" and event.changes.labels is not None:
        before = {label.text for label in event.changes.labels.previous}
        after = {label.text for label in event.changes.labels.current}
        if wanted in after and wanted not in before:
            action = "labeled"
    if action is None:
        return None
    issue = _Issue(
        number=attributes.iid,
        title=attributes.title,
        body=attributes.description,
        labels=[_Label(name=label) for label in labels],
    )
    return _issue_trigger(delivery, _gitlab_repository(event.project), issue, event.user.name, action)


def _gitlab_note(delivery: _Delivery, payload: Any) -> Trigger | None:
    event = _model(_GitLabNoteHook, payload)
    note = event.object_attributes
    if note.action not in (None, "create") or not delivery.mentioned(note.note, event.user.name):
        return None
    repository = _gitlab_repository(event.project)
    if note.noteable_type == "Issue" and event.issue is not None:
        issue = _Issue(
            number=event.issue.iid,
            title=event.issue.title,
            body=event.issue.description,
            labels=event.issue.labels,
        )
        comment = _Comment(id=note.id, body=note.note)
        return _issue_trigger(delivery, repository, issue, event.user.name, "mentioned", comment)
    if note.noteable_type == "MergeRequest" and event.merge_request is not None:
        position = note.position or _GitLabPosition()
        return ReviewCommentTrigger(
            forge=delivery.kind,
            delivery_id=delivery.delivery_id,
            repository=repository.full_name,
            clone_url=repository.clone_url,
            number=event.merge_request.iid,
            head=event.merge_request.source_branch,
            base=event.merge_request.target_branch,
            thread_id=note.discussion_id,
            body=note.note,
            author=event.user.name,
            path=position.new_path or position.old_path,
            line=position.new_line if position.new_line is not None else position.old_line,
            diff_hunk=note.st_diff.diff if note.st_diff else None,
        )
    return None


def _gitea_issues(delivery: _Delivery, payload: Any) -> Trigger | None:
    event = _model(_GiteaIssues, payload)
    wanted = delivery.config.label
    has_label = any(label.text == wanted for label in event.issue.labels)
    if event.action == "opened" and has_label:
        return _issue_trigger(delivery, event.repository, event.issue, event.sender.name, "opened")
    if event.action == "label_updated" and has_label:
        added = event.changes.added_labels if event.changes else None
        # Older Gitea does not say which label changed: the label being present is all there is to go on.
        if added is None or any(label.text == wanted for label in added):
            return _issue_trigger(delivery, event.repository, event.issue, event.sender.name, "labeled")
    return None


def _gitea_issue_comment(delivery: _Delivery, payload: Any) -> Trigger | None:
    event = _model(_GiteaIssueComment, payload)
    comment = event.comment
    author = comment.user.name or event.sender.name
    if event.action != "created" or not delivery.mentioned(comment.body, author):
        return None
    if not event.is_pull and event.issue.pull_request is None:
        return _issue_trigger(delivery, event.repository, event.issue, author, "mentioned", comment)
    if event.pull_request is None:
        return None  # Gitea before 1.21 sent no branches with a pull request's comment
    return ReviewCommentTrigger(
        forge=delivery.kind,
        delivery_id=delivery.delivery_id,
        repository=event.repository.full_name,
        clone_url=event.repository.clone_url,
        number=event.pull_request.number,
        head=event.pull_request.head.ref,
        base=event.pull_request.base.ref,
        thread_id=str(comment.id),
        body=comment.body,
        author=author,
        path=comment.path,
        line=comment.line,
        diff_hunk=comment.diff_hunk,
    )


def _gitea_review(delivery: _Delivery, payload: Any) -> Trigger | None:
    """A submitted review: Gitea sends its summary text, not its line comments nor any comment id."""
    event = _model(_GiteaReviewed, payload)
    content = event.review.content if event.review else ""
    if event.action != "reviewed" or not delivery.mentioned(content, event.sender.name):
        return None
    return ReviewCommentTrigger(
        forge=delivery.kind,
        delivery_id=delivery.delivery_id,
        repository=event.repository.full_name,
        clone_url=event.repository.clone_url,
        number=event.pull_request.number,
        head=event.pull_request.head.ref,
        base=event.pull_request.base.ref,
        thread_id=None,
        body=content,
        author=event.sender.name,
    )


Parser = Callable[[_Delivery, Any], Trigger | None]

_PARSERS: dict[ForgeKind, dict[str, Parser]] = {
    ForgeKind.github: {
        "issues": _github_issues,
        "issue_comment": _github_issue_comment,
        "pull_request_review_comment": _github_review_comment,
    },
    ForgeKind.gitlab: {"Issue Hook": _gitlab_issue, "Note Hook": _gitlab_note},
    ForgeKind.gitea: {
        "issues": _gitea_issues,
        "issue_comment": _gitea_issue_comment,
        # Gitea names a review's event "pull_request_comment" in X-Gitea-Event and
        # "pull_request_review_comment" in X-Gitea-Event-Type.
        "pull_request_comment": _gitea_review,
        "pull_request_review_comment": _gitea_review,
    },
}

_EVENT_HEADERS = {
    ForgeKind.github: ("x-github-event",),
    ForgeKind.gitlab: ("x-gitlab-event",),
    ForgeKind.gitea: ("x-gitea-event", "x-forgejo-event"),
}
# GitLab's Idempotency-Key stays the same when a delivery is retried; X-Gitlab-Event-UUID is older.
_DELIVERY_HEADERS = {
    ForgeKind.github: ("x-github-delivery",),
    ForgeKind.gitlab: ("idempotency-key", "x-gitlab-event-uuid"),
    ForgeKind.gitea: ("x-gitea-delivery", "x-forgejo-delivery"),
}


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((headers[name] for name in names if headers.get(name)), None)


def parse(kind: ForgeKind, headers: Mapping[str, str], body: bytes, config: WebhookConfig) -> Trigger | None:
    """The trigger in a verified delivery, or None when it is not one (an event or action the platform
    does not act on, another label, a comment without the mention)."""
    lowered = _lower(headers)
    event = _first(lowered, _EVENT_HEADERS[kind])
    if event is None:
        raise WebhookRejected(400, f"missing {' / '.join(_EVENT_HEADERS[kind])}")
    parser = _PARSERS[kind].get(event)
    if parser is None:
        return None
    delivery_id = _first(lowered, _DELIVERY_HEADERS[kind])
    if delivery_id is None:
        raise WebhookRejected(400, f"missing {' / '.join(_DELIVERY_HEADERS[kind])}")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return parser(_Delivery(kind, delivery_id, config), payload)


def receive(
    kind: ForgeKind, headers: Mapping[str, str], body: bytes, config: WebhookConfig
) -> Trigger | None:
    """Verify, then parse: what the gateway's webhook route calls."""
    verify(kind, headers, body, config.secret, max_body_bytes=config.max_body_bytes)
    return parse(kind, headers, body, config)


def sign(kind: ForgeKind, body: bytes, secret: str) -> dict[str, str]:
    """The headers the forge would send to authenticate `body` (for tests and for replaying deliveries)."""
    if kind is ForgeKind.github:
        return {"X-Hub-Signature-256": "sha256=" + _hmac_hex(secret, body)}
    if kind is ForgeKind.gitlab:
        return {"X-Gitlab-Token": secret}
    return {"X-Gitea-Signature": _hmac_hex(secret, body)}


__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "IssueTrigger",
    "ReviewCommentTrigger",
    "Trigger",
    "WebhookConfig",
    "WebhookRejected",
    "parse",
    "receive",
    "sign",
    "verify",
]
