"""The one interface every forge adapter implements, and the errors that say retry or stop.

A repository on a forge is named by its path there (`owner/name`, or `group/sub/name` on GitLab). Pull
requests are found by their head branch, so a redone delivery finds the one it opened before instead of
opening a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from service_feature.errors import PermanentError, TransientError


class ForgeKind(StrEnum):
    github = "github"
    gitlab = "gitlab"
    gitea = "gitea"


@dataclass(frozen=True)
class PullRequest:
    """A pull request (a merge request on GitLab) as the platform needs it."""

    number: int  # GitHub/Gitea `number`, GitLab `iid`
    url: str  # the page a person opens
    head: str
    base: str
    draft: bool
    state: str  # "open", "closed" or "merged"
    node_id: str | None = None  # GitHub's GraphQL id (marking a draft ready needs it)


@dataclass(frozen=True)
class ThreadComment:
    """One comment of a review thread, as the agent is shown it."""

    author: str
    body: str


@dataclass(frozen=True)
class PullRequestDraft:
    """What the platform writes on a pull request: opened with it, or updated to it."""

    head: str
    base: str
    title: str
    body: str
    draft: bool
    labels: tuple[str, ...] = ()


class ForgeError(Exception):
    """A forge call that failed; `forge` names the forge (kind and API URL) for the user."""

    def __init__(self, forge: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{forge}: {message}")
        self.forge = forge
        self.status = status


class ForgeUnavailable(ForgeError, TransientError):
    """5xx, a timeout, a connection refused or a rate limit that outlasted the adapter's own retries: the
    step is redone later. `retry_after` is the forge's own wait (seconds), when it said one."""

    def __init__(
        self, forge: str, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(forge, message, status)
        self.retry_after = retry_after


class ForgeAuthError(ForgeError, PermanentError):
    """401/403 (not a rate limit): the token is wrong, expired or lacks a scope. The message names the
    setting that holds the token and the scopes docs/delivery.md lists."""


class ForgeRefused(ForgeError, PermanentError):
    """Any other 4xx (404 unknown repository, 422 invalid branch…): redoing the call would fail the same."""


class Forge(Protocol):
    """One forge account's API, as the worker uses it. Implementations retry 5xx and rate limits with
    backoff (honouring Retry-After / X-RateLimit-Reset / RateLimit-Reset) before raising ForgeUnavailable."""

    kind: ForgeKind

    async def find_pull_request(self, repository: str, head: str) -> PullRequest | None:
        """The open pull request from `head`, if any (closed ones are not reused)."""
        ...

    async def open_pull_request(self, repository: str, draft: PullRequestDraft) -> PullRequest:
        """Open a pull request from draft.head, or update the open one from it (title, body, labels; a
        draft stays one until `mark_ready`)."""
        ...

    async def mark_ready(self, repository: str, pull_request: PullRequest) -> PullRequest: ...

    async def close_pull_request(self, repository: str, pull_request: PullRequest, comment: str) -> None: ...

    async def comment(self, repository: str, pull_request: PullRequest, body: str) -> None: ...

    async def reply_to_review_comment(
        self, repository: str, pull_request: PullRequest, thread_id: str, body: str
    ) -> None:
        """Answer in a review thread (GitHub: the comment id; GitLab: the discussion id; Gitea: the
        review comment id, answered as a comment quoting it where Gitea has no reply API)."""
        ...

    async def thread(self, repository: str, pull_request: PullRequest, thread_id: str) -> list[ThreadComment]:
        """The review thread's comments, oldest first (Gitea, which has no threads: the comment itself)."""
        ...

    async def aclose(self) -> None: ...
