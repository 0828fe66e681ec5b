"""Gitea and Forgejo, over their REST API v1 with httpx.

No well-kept Python client exists for Gitea (the ones on PyPI lag the API or are unmaintained), and the
handful of calls needed here are plain JSON over `/api/v1`, which Forgejo serves unchanged. httpx is the
platform's HTTP client already; pagination follows the `Link` header Gitea sends.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

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

DRAFT_PREFIX = "WIP: "
# Gitea's default WORK_IN_PROGRESS_PREFIXES are "WIP:" and "[WIP]"; Forgejo adds "Draft:" forms.
_DRAFT_TITLE = re.compile(r"^\s*(?:(?:wip:|\[wip\]|draft:|\[draft\])\s*)+", re.IGNORECASE)
_PAGE_SIZE = 50
_NEW_LABEL_COLOR = "#ededed"
_QUOTED_LINES = 5


def strip_draft(title: str) -> str:
    return _DRAFT_TITLE.sub("", title)


def is_draft_title(title: str) -> bool:
    return _DRAFT_TITLE.match(title) is not None


def _pull_request(data: Mapping[str, Any]) -> PullRequest:
    title = str(data.get("title", ""))
    state = "merged" if data.get("merged") else str(data.get("state", "open"))
    return PullRequest(
        number=int(data["number"]),
        url=str(data["html_url"]),
        head=str(data["head"]["ref"]),
        base=str(data["base"]["ref"]),
        draft=bool(data.get("draft")) or is_draft_title(title),
        state=state,
    )


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.reason_phrase


def quote(body: str) -> str:
    lines = body.strip().splitlines()[:_QUOTED_LINES]
    return "\n".join(f"> {line}" for line in lines)


class GiteaForge:
    """A Gitea or Forgejo account as the worker uses it; `api_url` is the server's root."""

    kind = ForgeKind.gitea

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        token_setting: str,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/").removesuffix("/api/v1")
        self._context = ForgeContext(f"{self.kind} ({self.api_url})", token_setting)
        self._policy = policy or FORGE_RETRIES
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=f"{self.api_url}/api/v1",
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"GiteaForge(api_url={self.api_url!r})"

    # -- HTTP ----------------------------------------------------------------------------------------------

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.TransportError as error:
            raise CallFailure(None, f"{type(error).__name__}: {error}") from None
        if response.is_success:
            return response
        raise CallFailure(response.status_code, _message(response), parse_wait(response.headers))

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await call_with_retries(
            call, context=self._context, policy=self._policy, sleep=self._sleep, operation=operation
        )

    async def _json(self, operation: str, method: str, url: str, **kwargs: Any) -> Any:
        async def send() -> Any:
            response = await self._send(method, url, **kwargs)
            return response.json() if response.content else None

        return await self._call(operation, send)

    async def _pages(self, operation: str, url: str, params: Mapping[str, Any]) -> AsyncIterator[Any]:
        """Every item of a paginated list, each page fetched (and retried) on its own."""
        next_url: str | None = url
        query: Mapping[str, Any] | None = {**params, "limit": _PAGE_SIZE, "page": 1}
        while next_url is not None:
            fetch = functools.partial(self._send, "GET", next_url, params=query)
            response = await self._call(operation, fetch)
            for item in response.json():
                yield item
            next_link = response.links.get("next", {}).get("url")
            next_url, query = (next_link, None) if next_link else (None, None)

    # -- Forge ---------------------------------------------------------------------------------------------

    async def find_pull_request(self, repository: str, head: str) -> PullRequest | None:
        async for data in self._pages("find_pull_request", f"/repos/{repository}/pulls", {"state": "open"}):
            head_repository = (data.get("head") or {}).get("repo") or {}
            same_repository = head_repository.get("full_name", repository) == repository
            if data["head"]["ref"] == head and same_repository:
                return _pull_request(data)
        return None

    async def open_pull_request(self, repository: str, draft: PullRequestDraft) -> PullRequest:
        label_ids = await self._label_ids(repository, draft.labels) if draft.labels else []
        existing = await self.find_pull_request(repository, draft.head)
        if existing is None:
            try:
                existing = await self._create(repository, draft, label_ids)
            except _AlreadyOpen:
                existing = await self.find_pull_request(repository, draft.head)
                if existing is None:
                    raise ForgeRefused(
                        self._context.forge,
                        f"a pull request from {draft.head} already exists but is not open in {repository}",
                        409,
                    ) from None
            else:
                return existing
        updated = await self._update(repository, existing, draft)
        if label_ids:
            await self._json(
                "add_labels",
                "POST",
                f"/repos/{repository}/issues/{existing.number}/labels",
                json={"labels": label_ids},
            )
        return updated

    async def _create(self, repository: str, draft: PullRequestDraft, label_ids: list[int]) -> PullRequest:
        body: dict[str, Any] = {
            "head": draft.head,
            "base": draft.base,
            "title": DRAFT_PREFIX + draft.title if draft.draft else draft.title,
            "body": draft.body,
        }
        if label_ids:
            body["labels"] = label_ids

        async def create() -> PullRequest:
            try:
                response = await self._send("POST", f"/repos/{repository}/pulls", json=body)
            except CallFailure as failure:
                if failure.status in (409, 422) and "already exists" in failure.message.lower():
                    raise _AlreadyOpen(failure.message) from None
                raise
            return _pull_request(response.json())

        return await self._call("create_pull_request", create)

    async def _update(self, repository: str, existing: PullRequest, draft: PullRequestDraft) -> PullRequest:
        # A draft stays one until mark_ready: the prefix is what makes it one on Gitea.
        title = DRAFT_PREFIX + draft.title if existing.draft else draft.title
        data = await self._json(
            "update_pull_request",
            "PATCH",
            f"/repos/{repository}/pulls/{existing.number}",
            json={"title": title, "body": draft.body},
        )
        return _pull_request(data)

    async def _label_ids(self, repository: str, names: tuple[str, ...]) -> list[int]:
        """Gitea labels pull requests by id: look the names up, creating the ones the repository lacks."""
        known: dict[str, int] = {}
        async for label in self._pages("list_labels", f"/repos/{repository}/labels", {}):
            known[str(label["name"])] = int(label["id"])
        for name in names:
            if name not in known:
                created = await self._json(
                    "create_label",
                    "POST",
                    f"/repos/{repository}/labels",
                    json={"name": name, "color": _NEW_LABEL_COLOR},
                )
                known[name] = int(created["id"])
        return [known[name] for name in names]

    async def mark_ready(self, repository: str, pull_request: PullRequest) -> PullRequest:
        current = await self._json(
            "get_pull_request", "GET", f"/repos/{repository}/pulls/{pull_request.number}"
        )
        title = str(current.get("title", ""))
        if not is_draft_title(title):
            return _pull_request(current)
        data = await self._json(
            "mark_ready",
            "PATCH",
            f"/repos/{repository}/pulls/{pull_request.number}",
            json={"title": strip_draft(title)},
        )
        return _pull_request(data)

    async def close_pull_request(self, repository: str, pull_request: PullRequest, comment: str) -> None:
        await self.comment(repository, pull_request, comment)
        await self._json(
            "close_pull_request",
            "PATCH",
            f"/repos/{repository}/pulls/{pull_request.number}",
            json={"state": "closed"},
        )

    async def comment(self, repository: str, pull_request: PullRequest, body: str) -> None:
        await self._json(
            "comment",
            "POST",
            f"/repos/{repository}/issues/{pull_request.number}/comments",
            json={"body": body},
        )

    async def reply_to_review_comment(
        self, repository: str, pull_request: PullRequest, thread_id: str, body: str
    ) -> None:
        """Gitea has no reply API for review comments: a conversation comment quoting the one answered."""
        original = await self._review_comment(repository, pull_request.number, thread_id)
        if original is None:
            reply = f"(in reply to review comment {thread_id})\n\n{body}"
        else:
            where = f"`{original['path']}`" if original.get("path") else "a review comment"
            link = f" ({original['html_url']})" if original.get("html_url") else ""
            reply = f"On {where}{link}:\n\n{quote(str(original.get('body', '')))}\n\n{body}"
        await self.comment(repository, pull_request, reply)

    async def _review_comment(self, repository: str, number: int, comment_id: str) -> Any:
        """The review comment `comment_id`, searched through the pull request's reviews (Gitea serves a
        review comment only as part of its review)."""
        base = f"/repos/{repository}/pulls/{number}/reviews"
        async for review in self._pages("list_reviews", base, {}):
            comments = await self._json("list_review_comments", "GET", f"{base}/{review['id']}/comments")
            for comment in comments or []:
                if str(comment.get("id")) == comment_id:
                    return comment
        return None

    async def thread(self, repository: str, pull_request: PullRequest, thread_id: str) -> list[ThreadComment]:
        """Gitea keeps no reply threads on review comments: the thread is the comment itself."""
        comment = await self._review_comment(repository, pull_request.number, thread_id)
        if comment is None:
            return []
        return [
            ThreadComment(str((comment.get("user") or {}).get("login", "")), str(comment.get("body", "")))
        ]

    async def aclose(self) -> None:
        await self._client.aclose()


class _AlreadyOpen(Exception):
    """The create lost a race: another delivery opened the pull request from this head meanwhile."""
