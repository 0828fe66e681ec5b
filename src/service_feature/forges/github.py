"""GitHub and GitHub Enterprise Server, through gidgethub.

gidgethub is the maintained async GitHub client: it builds GitHub's headers, follows `Link` pagination,
decodes GitHub's error bodies (422 validation errors, the 403 rate limit) into typed exceptions and speaks
GraphQL, which marking a draft ready needs (REST cannot). Its transport is a small backend over the
platform's own `httpx.AsyncClient` (gidgethub's bundled httpx backend binds to whichever httpx generation
happens to be importable), so connection errors and timeouts are httpx's and are retried here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import gidgethub
import gidgethub.abc
import httpx

from service_feature.forges.base import ForgeKind, ForgeRefused, PullRequest, PullRequestDraft, ThreadComment
from service_feature.forges.retry import (
    FORGE_RETRIES,
    CallFailure,
    ForgeContext,
    RetryPolicy,
    Sleep,
    call_with_retries,
    is_rate_limited,
    parse_wait,
)

T = TypeVar("T")

_USER_AGENT = "service-feature"
_MARK_READY = """
mutation($id: ID!) {
  markPullRequestReadyForReview(input: {pullRequestId: $id}) {
    pullRequest { number url isDraft state }
  }
}
"""


class _GitHubAPI(gidgethub.abc.GitHubAPI):
    """gidgethub over an httpx client the adapter owns."""

    def __init__(self, client: httpx.AsyncClient, token: str, base_url: str) -> None:
        super().__init__(_USER_AGENT, oauth_token=token, base_url=base_url)
        self._client = client

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        response = await self._client.request(method, url, headers=dict(headers), content=body)
        return response.status_code, response.headers, response.content

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return f"_GitHubAPI(base_url={self.base_url!r})"


def graphql_url(api_url: str) -> str:
    """github.com's GraphQL endpoint is `{api}/graphql`; Enterprise serves REST at `/api/v3` and GraphQL
    at `/api/graphql`."""
    parts = urlsplit(api_url.rstrip("/"))
    path = parts.path.removesuffix("/v3") if parts.path.endswith("/api/v3") else parts.path
    path += "/graphql"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _names(repository: str) -> dict[str, str]:
    """URI-template variables for `owner/name` (a `{repository}` variable would escape the slash)."""
    owner, _, name = repository.partition("/")
    return {"owner": owner, "name": name}


def _already_exists(failure: CallFailure) -> bool:
    return failure.status == 422 and "already exists" in failure.message.lower()


def _to_failure(error: Exception) -> CallFailure | None:
    """The neutral failure for gidgethub's and httpx's exceptions; None for anything else (a bug)."""
    if isinstance(error, gidgethub.HTTPException):
        status = int(error.status_code)
        headers = error.headers
        message = str(error) or error.status_code.phrase
        return CallFailure(
            status, message, parse_wait(headers), rate_limited=is_rate_limited(status, headers)
        )
    if isinstance(error, gidgethub.BadGraphQLRequest):
        return CallFailure(int(error.status_code), str(error))
    if isinstance(error, gidgethub.QueryError):
        return _query_error(error)
    if isinstance(error, gidgethub.GraphQLException):
        return CallFailure(None, str(error))
    if isinstance(error, httpx.TransportError):
        return CallFailure(None, f"{type(error).__name__}: {error}")
    return None


def _query_error(error: gidgethub.QueryError) -> CallFailure:
    """GraphQL answers 200 with `errors`; their `type` says whether redoing could help."""
    kind = ""
    errors = error.response.get("errors") if isinstance(error.response, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        kind = str(errors[0].get("type", ""))
    if kind == "RATE_LIMITED":
        return CallFailure(429, str(error))
    if kind == "FORBIDDEN":
        return CallFailure(403, str(error))
    return CallFailure(422, str(error))


def _pull_request(data: Mapping[str, Any]) -> PullRequest:
    state = "merged" if data.get("merged_at") or data.get("merged") else str(data["state"])
    return PullRequest(
        number=int(data["number"]),
        url=str(data["html_url"]),
        head=str(data["head"]["ref"]),
        base=str(data["base"]["ref"]),
        draft=bool(data.get("draft", False)),
        state=state,
        node_id=data.get("node_id"),
    )


class GitHubForge:
    """A GitHub account (github.com or an Enterprise server) as the worker uses it."""

    kind = ForgeKind.github

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
        self.api_url = api_url.rstrip("/")
        self._context = ForgeContext(f"{self.kind} ({self.api_url})", token_setting)
        self._policy = policy or FORGE_RETRIES
        self._sleep = sleep
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._api = _GitHubAPI(self._client, token, self.api_url)
        self._graphql = graphql_url(self.api_url)

    def __repr__(self) -> str:
        return f"GitHubForge(api_url={self.api_url!r})"

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        async def translated() -> T:
            try:
                return await call()
            except Exception as error:
                failure = _to_failure(error)
                if failure is None:
                    raise
                raise failure from None

        return await call_with_retries(
            translated, context=self._context, policy=self._policy, sleep=self._sleep, operation=operation
        )

    # -- Forge ---------------------------------------------------------------------------------------------

    async def find_pull_request(self, repository: str, head: str) -> PullRequest | None:
        owner = repository.split("/", 1)[0]

        async def first_match() -> PullRequest | None:
            pulls = self._api.getiter(
                "/repos/{owner}/{name}/pulls{?head,state,per_page}",
                {**_names(repository), "head": f"{owner}:{head}", "state": "open", "per_page": 100},
            )
            async for data in pulls:
                if data["head"]["ref"] == head:
                    return _pull_request(data)
            return None

        return await self._call("find_pull_request", first_match)

    async def open_pull_request(self, repository: str, draft: PullRequestDraft) -> PullRequest:
        existing = await self.find_pull_request(repository, draft.head)
        if existing is None:
            try:
                existing = await self._create(repository, draft)
            except _AlreadyOpen:
                existing = await self.find_pull_request(repository, draft.head)
                if existing is None:
                    raise ForgeRefused(
                        self._context.forge,
                        f"a pull request from {draft.head} already exists but is not open in {repository}",
                        422,
                    ) from None
                existing = await self._update(repository, existing, draft)
        else:
            existing = await self._update(repository, existing, draft)
        if draft.labels:
            await self._add_labels(repository, existing.number, draft.labels)
        return existing

    async def _create(self, repository: str, draft: PullRequestDraft) -> PullRequest:
        body = {
            "title": draft.title,
            "body": draft.body,
            "head": draft.head,
            "base": draft.base,
            "draft": draft.draft,
        }

        async def create() -> PullRequest:
            try:
                data = await self._api.post("/repos/{owner}/{name}/pulls", _names(repository), data=body)
            except gidgethub.HTTPException as error:
                failure = _to_failure(error)
                if failure is not None and _already_exists(failure):
                    raise _AlreadyOpen(failure.message) from None
                raise
            return _pull_request(data)

        return await self._call("create_pull_request", create)

    async def _update(
        self, repository: str, pull_request: PullRequest, draft: PullRequestDraft
    ) -> PullRequest:
        body = {"title": draft.title, "body": draft.body}
        data = await self._call(
            "update_pull_request",
            lambda: self._api.patch(
                "/repos/{owner}/{name}/pulls/{number}",
                {**_names(repository), "number": pull_request.number},
                data=body,
            ),
        )
        return _pull_request(data)

    async def _add_labels(self, repository: str, number: int, labels: tuple[str, ...]) -> None:
        # The issues API creates a label the repository does not have yet.
        await self._call(
            "add_labels",
            lambda: self._api.post(
                "/repos/{owner}/{name}/issues/{number}/labels",
                {**_names(repository), "number": number},
                data={"labels": list(labels)},
            ),
        )

    async def mark_ready(self, repository: str, pull_request: PullRequest) -> PullRequest:
        current = await self._get(repository, pull_request.number)
        if not current.draft:
            return current
        node_id = current.node_id

        async def mutate() -> Any:
            return await self._api.graphql(_MARK_READY, endpoint=self._graphql, id=node_id)

        await self._call("mark_ready", mutate)
        return await self._get(repository, pull_request.number)

    async def _get(self, repository: str, number: int) -> PullRequest:
        data = await self._call(
            "get_pull_request",
            lambda: self._api.getitem(
                "/repos/{owner}/{name}/pulls/{number}", {**_names(repository), "number": number}
            ),
        )
        return _pull_request(data)

    async def close_pull_request(self, repository: str, pull_request: PullRequest, comment: str) -> None:
        await self.comment(repository, pull_request, comment)
        await self._call(
            "close_pull_request",
            lambda: self._api.patch(
                "/repos/{owner}/{name}/pulls/{number}",
                {**_names(repository), "number": pull_request.number},
                data={"state": "closed"},
            ),
        )

    async def comment(self, repository: str, pull_request: PullRequest, body: str) -> None:
        await self._call(
            "comment",
            lambda: self._api.post(
                "/repos/{owner}/{name}/issues/{number}/comments",
                {**_names(repository), "number": pull_request.number},
                data={"body": body},
            ),
        )

    async def reply_to_review_comment(
        self, repository: str, pull_request: PullRequest, thread_id: str, body: str
    ) -> None:
        await self._call(
            "reply_to_review_comment",
            lambda: self._api.post(
                "/repos/{owner}/{name}/pulls/{number}/comments/{comment_id}/replies",
                {**_names(repository), "number": pull_request.number, "comment_id": thread_id},
                data={"body": body},
            ),
        )

    async def thread(self, repository: str, pull_request: PullRequest, thread_id: str) -> list[ThreadComment]:
        """The thread's first comment and its replies (`in_reply_to_id` names the first)."""

        async def collect() -> list[ThreadComment]:
            comments = self._api.getiter(
                "/repos/{owner}/{name}/pulls/{number}/comments{?per_page}",
                {**_names(repository), "number": pull_request.number, "per_page": 100},
            )
            found = [
                data
                async for data in comments
                if thread_id in (str(data.get("id")), str(data.get("in_reply_to_id")))
            ]
            found.sort(key=lambda data: int(data["id"]))
            return [ThreadComment(str(data["user"]["login"]), str(data.get("body", ""))) for data in found]

        return await self._call("thread", collect)

    async def aclose(self) -> None:
        await self._client.aclose()


class _AlreadyOpen(Exception):
    """The create lost a race: another delivery opened the pull request from this head meanwhile."""
