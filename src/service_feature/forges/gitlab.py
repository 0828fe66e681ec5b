"""GitLab (gitlab.com or self-managed), through python-gitlab.

python-gitlab is GitLab's de-facto Python client: it knows the v4 paths, encodes `group/sub/name` project
paths, follows pagination and decodes GitLab's error bodies. It is synchronous (requests), so every call runs
in a worker thread (`asyncio.to_thread`). Its own retry loop is switched off: it would sleep in that thread
with `time.sleep`, out of reach of the adapter's policy and of tests; `forges.retry` retries instead, with
the Retry-After / RateLimit-Reset headers captured from the last response of the failing call.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions
from gitlab.v4.objects import Project

from service_feature.forges.base import (
    ForgeKind,
    ForgeRefused,
    PullRequest,
    PullRequestDraft,
    ThreadComment,
)
from service_feature.forges.retry import (
    FORGE_RETRIES,
    CallFailure,
    ForgeContext,
    RetryPolicy,
    Sleep,
    call_with_retries,
    parse_wait,
)

T = TypeVar("T")

DRAFT_PREFIX = "Draft: "
# The prefixes GitLab itself reads as "draft" (`[Draft]`, `(Draft)`, `Draft:`), possibly repeated.
_DRAFT_TITLE = re.compile(r"^\s*(?:(?:\[draft\]|\(draft\)|draft:)\s*)+", re.IGNORECASE)
_STATES = {"opened": "open", "locked": "open", "closed": "closed", "merged": "merged"}


class _SingleShotGitlab(gitlab.Gitlab):
    """python-gitlab making each request once, and keeping the headers of the last answer per thread (its
    errors do not carry them, and the wait a 429 asks for is in them)."""

    def __init__(self, url: str, private_token: str, timeout: float) -> None:
        super().__init__(url, private_token=private_token, timeout=timeout, retry_transient_errors=False)
        self._last = threading.local()
        self.session.hooks["response"].append(self._remember)

    def _remember(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._last.headers = response.headers

    def last_headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = getattr(self._last, "headers", None) or {}
        return headers

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> Any:
        kwargs.update(obey_rate_limit=False, retry_transient_errors=False, max_retries=0)
        self._last.headers = None
        return super().http_request(verb, path, *args, **kwargs)

    def __repr__(self) -> str:
        return f"_SingleShotGitlab(url={self.url!r})"


def strip_draft(title: str) -> str:
    return _DRAFT_TITLE.sub("", title)


def is_draft_title(title: str) -> bool:
    return _DRAFT_TITLE.match(title) is not None


def _message(error: gitlab.exceptions.GitlabError) -> str:
    """GitLab's message may be a string, a list, or a field → problems mapping."""
    message: Any = error.error_message
    if isinstance(message, list):
        return "; ".join(str(item) for item in message)
    if isinstance(message, dict):
        return "; ".join(f"{field} {problems}" for field, problems in message.items())
    return str(message)


def _pull_request(data: Mapping[str, Any]) -> PullRequest:
    title = str(data.get("title", ""))
    draft = bool(data.get("draft", data.get("work_in_progress", is_draft_title(title))))
    return PullRequest(
        number=int(data["iid"]),
        url=str(data["web_url"]),
        head=str(data["source_branch"]),
        base=str(data["target_branch"]),
        draft=draft,
        state=_STATES.get(str(data.get("state")), str(data.get("state"))),
    )


def _attributes(obj: Any) -> Mapping[str, Any]:
    attributes: Mapping[str, Any] = obj.attributes if hasattr(obj, "attributes") else obj
    return attributes


class GitLabForge:
    """A GitLab account as the worker uses it; a repository is the project's full path."""

    kind = ForgeKind.gitlab

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        token_setting: str,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout: float = 30.0,
    ) -> None:
        # python-gitlab wants the server's root and appends /api/v4 itself.
        self.api_url = api_url.rstrip("/").removesuffix("/api/v4")
        self._context = ForgeContext(f"{self.kind} ({self.api_url})", token_setting)
        self._policy = policy or FORGE_RETRIES
        self._sleep = sleep
        self._gl = _SingleShotGitlab(self.api_url, token, timeout)

    def __repr__(self) -> str:
        return f"GitLabForge(api_url={self.api_url!r})"

    def _project(self, repository: str) -> Project:
        return self._gl.projects.get(repository, lazy=True)

    def _translated(self, call: Callable[[], T]) -> T:
        """Runs in the worker thread, where the failing response's headers are still at hand."""
        try:
            return call()
        except gitlab.exceptions.GitlabError as error:
            headers = self._gl.last_headers()
            raise CallFailure(error.response_code, _message(error), parse_wait(headers)) from None
        except OSError as error:  # requests' ConnectionError and Timeout are OSErrors
            raise CallFailure(None, f"{type(error).__name__}: {error}") from None

    async def _call(self, operation: str, call: Callable[[], T]) -> T:
        return await call_with_retries(
            lambda: asyncio.to_thread(self._translated, call),
            context=self._context,
            policy=self._policy,
            sleep=self._sleep,
            operation=operation,
        )

    # -- Forge ---------------------------------------------------------------------------------------------

    async def find_pull_request(self, repository: str, head: str) -> PullRequest | None:
        def first_open() -> PullRequest | None:
            merge_requests = self._project(repository).mergerequests.list(
                source_branch=head, state="opened", get_all=True
            )
            for merge_request in merge_requests:
                data = _attributes(merge_request)
                if data.get("source_branch") == head:
                    return _pull_request(data)
            return None

        return await self._call("find_pull_request", first_open)

    async def open_pull_request(self, repository: str, draft: PullRequestDraft) -> PullRequest:
        existing = await self.find_pull_request(repository, draft.head)
        if existing is not None:
            return await self._update(repository, existing, draft)
        try:
            return await self._create(repository, draft)
        except _AlreadyOpen:
            existing = await self.find_pull_request(repository, draft.head)
            if existing is None:
                raise ForgeRefused(
                    self._context.forge,
                    f"a merge request from {draft.head} already exists but is not open in {repository}",
                    409,
                ) from None
            return await self._update(repository, existing, draft)

    async def _create(self, repository: str, draft: PullRequestDraft) -> PullRequest:
        title = DRAFT_PREFIX + draft.title if draft.draft else draft.title
        body: dict[str, Any] = {
            "source_branch": draft.head,
            "target_branch": draft.base,
            "title": title,
            "description": draft.body,
        }
        if draft.labels:
            # GitLab creates a project label it does not know yet.
            body["labels"] = ",".join(draft.labels)

        def create() -> PullRequest:
            try:
                created = self._project(repository).mergerequests.create(body)
            except gitlab.exceptions.GitlabError as error:
                if error.response_code in (409, 422) and "already exists" in _message(error).lower():
                    raise _AlreadyOpen(_message(error)) from None
                raise
            return _pull_request(_attributes(created))

        return await self._call("create_pull_request", create)

    async def _update(self, repository: str, existing: PullRequest, draft: PullRequestDraft) -> PullRequest:
        # A draft stays one until mark_ready: the prefix is what makes it one on GitLab.
        title = DRAFT_PREFIX + draft.title if existing.draft else draft.title
        changes: dict[str, Any] = {"title": title, "description": draft.body}
        if draft.labels:
            changes["add_labels"] = ",".join(draft.labels)
        data = await self._call(
            "update_pull_request",
            lambda: self._project(repository).mergerequests.update(existing.number, changes),
        )
        return _pull_request(data)

    async def mark_ready(self, repository: str, pull_request: PullRequest) -> PullRequest:
        current = await self._call(
            "get_pull_request",
            lambda: _attributes(self._project(repository).mergerequests.get(pull_request.number)),
        )
        title = str(current.get("title", ""))
        if not is_draft_title(title):
            return _pull_request(current)
        data = await self._call(
            "mark_ready",
            lambda: self._project(repository).mergerequests.update(
                pull_request.number, {"title": strip_draft(title)}
            ),
        )
        return _pull_request(data)

    async def close_pull_request(self, repository: str, pull_request: PullRequest, comment: str) -> None:
        await self.comment(repository, pull_request, comment)
        await self._call(
            "close_pull_request",
            lambda: self._project(repository).mergerequests.update(
                pull_request.number, {"state_event": "close"}
            ),
        )

    async def comment(self, repository: str, pull_request: PullRequest, body: str) -> None:
        def create_note() -> None:
            merge_request = self._project(repository).mergerequests.get(pull_request.number, lazy=True)
            merge_request.notes.create({"body": body})

        await self._call("comment", create_note)

    async def reply_to_review_comment(
        self, repository: str, pull_request: PullRequest, thread_id: str, body: str
    ) -> None:
        def create_reply() -> None:
            merge_request = self._project(repository).mergerequests.get(pull_request.number, lazy=True)
            discussion = merge_request.discussions.get(thread_id, lazy=True)
            discussion.notes.create({"body": body})

        await self._call("reply_to_review_comment", create_reply)

    async def thread(self, repository: str, pull_request: PullRequest, thread_id: str) -> list[ThreadComment]:
        def read() -> list[ThreadComment]:
            merge_request = self._project(repository).mergerequests.get(pull_request.number, lazy=True)
            notes = merge_request.discussions.get(thread_id).attributes.get("notes", [])
            return [
                ThreadComment(str(note.get("author", {}).get("username", "")), str(note.get("body", "")))
                for note in notes
                if not note.get("system")
            ]

        return await self._call("thread", read)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._gl.session.close)


class _AlreadyOpen(Exception):
    """The create lost a race: another delivery opened the merge request from this head meanwhile."""
