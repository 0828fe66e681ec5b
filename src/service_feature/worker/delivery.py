"""Delivery's collaborators: what a delivery reads from the store, and the pull requests it opens, marks
ready and closes on the repository's forge (pull-request delivery).

Forge tokens live in the worker's settings and reach only the forge client: never a sandbox, a
transcript, a commit or a log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.config import WorkerSettings
from service_feature.errors import PermanentError
from service_feature.forges.base import ForgeError, ForgeKind, PullRequest, PullRequestDraft
from service_feature.forges.registry import ForgeAccount, open_forge, resolve
from service_feature.logs import register_secrets
from service_feature.models import DeliveryMode, FeatureRequest, TestResult
from service_feature.store.features import execution_for, latest_review, patch_for
from service_feature.store.steps import request_of
from service_feature.store.tables import Feature, Patch, TranscriptEntry
from service_feature.worker.pull_requests import (
    PullRequestFacts,
    pull_request_body,
    pull_request_labels,
    pull_request_title,
    reply_body,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What delivering one feature needs, read in one transaction."""

    request: FeatureRequest
    mode: DeliveryMode
    patch: Patch
    review: dict[str, Any] | None
    tests: TestResult | None
    base_commit: str
    created_at: datetime
    cost_usd: float
    tokens: int
    models: tuple[str, ...]

    @property
    def branch(self) -> str:
        return branch_of(self.request)

    @property
    def drafts(self) -> bool:
        """Whether a held feature gets a draft pull request meanwhile: in pull-request delivery, unless
        it answers a review comment (its pull request is open already)."""
        return self.mode is DeliveryMode.pull_request and self.request.follow_up is None

    def facts(self, *, held: bool, public_url: str | None) -> PullRequestFacts:
        transcript = f"{public_url.rstrip('/')}/features/{self.request.execution_id}" if public_url else None
        return PullRequestFacts(
            request=self.request,
            summary=self.patch.summary,
            tests=self.tests,
            review=self.review,
            cost_usd=self.cost_usd,
            tokens=self.tokens,
            models=self.models,
            transcript_url=transcript,
            held=held,
        )


def branch_of(request: FeatureRequest) -> str:
    """Where the feature's commit goes: `feature/<id>`, or a follow-up's pull request branch."""
    return request.branch if request.follow_up else f"feature/{request.execution_id}"


def mode_of(request: FeatureRequest, settings: WorkerSettings) -> DeliveryMode:
    if request.follow_up is not None:
        return DeliveryMode.pull_request  # it answers on a pull request, whatever the default
    return request.delivery or settings.delivery_mode


async def load_delivery(session: AsyncSession, feature: Feature, settings: WorkerSettings) -> Delivery:
    attempt = feature.attempts
    patch = await patch_for(session, feature.execution_id, attempt)
    review = await latest_review(session, feature.execution_id)
    execution = await execution_for(session, feature.execution_id, attempt)
    assert patch is not None and feature.base_commit is not None
    request = request_of(feature)
    return Delivery(
        request=request,
        mode=mode_of(request, settings),
        patch=patch,
        review=review.result if review else None,
        tests=TestResult.model_validate(execution.result) if execution else None,
        base_commit=feature.base_commit,
        created_at=feature.created_at,
        cost_usd=feature.cost_usd,
        tokens=feature.input_tokens + feature.output_tokens,
        models=await _models_of(session, feature.execution_id),
    )


async def _models_of(session: AsyncSession, execution_id: str) -> tuple[str, ...]:
    """The models the agent called, in order of first use."""
    query = select(TranscriptEntry.content).where(
        TranscriptEntry.execution_id == execution_id, TranscriptEntry.kind == "model"
    )
    names = (str(content.get("model") or "") for content in (await session.execute(query)).scalars())
    return tuple(dict.fromkeys(name for name in names if name))


def forge_accounts(settings: WorkerSettings) -> list[ForgeAccount]:
    """The forge accounts from the settings: SF_FORGES_JSON's first (one per repository host), then
    GITHUB_TOKEN, GITLAB_TOKEN and GITEA_TOKEN for the hosts of their API URLs."""
    accounts = [_account_from_json(entry) for entry in _forges_json(settings)]
    if settings.github_token is not None:
        host = _host(settings.github_api_url)
        host = "github.com" if host == "api.github.com" else host  # Enterprise: https://host/api/v3
        token = settings.github_token.get_secret_value()
        accounts.append(ForgeAccount(ForgeKind.github, settings.github_api_url, token, "GITHUB_TOKEN", host))
    if settings.gitlab_token is not None:
        token = settings.gitlab_token.get_secret_value()
        url = settings.gitlab_url
        accounts.append(ForgeAccount(ForgeKind.gitlab, url, token, "GITLAB_TOKEN", _host(url)))
    if settings.gitea_token is not None and settings.gitea_url:
        token = settings.gitea_token.get_secret_value()
        url = settings.gitea_url
        accounts.append(ForgeAccount(ForgeKind.gitea, url, token, "GITEA_TOKEN", _host(url)))
    return accounts


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return host if parts.port is None else f"{host}:{parts.port}"


def _forges_json(settings: WorkerSettings) -> list[dict[str, Any]]:
    if settings.forges_json is None:
        return []
    try:
        entries = json.loads(settings.forges_json.get_secret_value())
    except json.JSONDecodeError as error:
        raise ValueError(f"SF_FORGES_JSON is not JSON: {error.msg} at {error.pos}") from None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ValueError('SF_FORGES_JSON must be a list of {"kind", "host", "api_url", "token"} objects')
    return entries


def _account_from_json(entry: dict[str, Any]) -> ForgeAccount:
    missing = [key for key in ("kind", "host", "api_url", "token") if not entry.get(key)]
    if missing:
        raise ValueError(f"SF_FORGES_JSON: an entry lacks {', '.join(missing)}")
    kinds = ", ".join(kind.value for kind in ForgeKind)
    if entry["kind"] not in kinds.split(", "):
        raise ValueError(f"SF_FORGES_JSON: kind {entry['kind']!r} is not one of {kinds}")
    register_secrets(str(entry["token"]))
    setting = f"SF_FORGES_JSON ({entry['host']})"
    return ForgeAccount(ForgeKind(entry["kind"]), entry["api_url"], entry["token"], setting, entry["host"])


class PullRequests:
    """Opens, readies and closes the pull request of a feature's branch, on whichever forge serves the
    repository."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._accounts = forge_accounts(settings)  # at start: a wrong SF_FORGES_JSON stops the worker

    def _find_account(self, repository_url: str) -> tuple[ForgeAccount, str]:

        found = resolve(repository_url, self._accounts)
        if found is None:
            raise PermanentError(
                f"pull-request delivery: no forge account for {repository_url}; set GITHUB_TOKEN, "
                "GITLAB_TOKEN (with GITLAB_URL), GITEA_TOKEN (with GITEA_URL) or SF_FORGES_JSON for its "
                "host (docs/delivery.md), or deliver a branch (DELIVERY_MODE=branch)"
            )
        return found

    async def publish(self, delivery: Delivery, facts: PullRequestFacts) -> PullRequest:
        """Open the branch's pull request, or update the one open already; a draft while `facts.held`,
        made ready otherwise."""
        account, repository = self._find_account(delivery.request.repository_url)
        draft = PullRequestDraft(
            head=delivery.branch,
            base=delivery.request.branch,
            title=pull_request_title(delivery.request),
            body=pull_request_body(facts),
            draft=facts.held,
            labels=pull_request_labels(delivery.review),
        )
        forge = open_forge(account)
        try:
            pull_request = await forge.open_pull_request(repository, draft)
            if pull_request.draft and not facts.held:
                pull_request = await forge.mark_ready(repository, pull_request)
        finally:
            await forge.aclose()
        log.info("worker.pull_request", url=pull_request.url, draft=pull_request.draft)
        return pull_request

    async def reply(self, delivery: Delivery, commit: str) -> PullRequest:
        """A follow-up's answer in the review thread it came from: the commit and what the agent did."""
        follow_up = delivery.request.follow_up
        assert follow_up is not None
        account, repository = self._find_account(delivery.request.repository_url)
        forge = open_forge(account)
        try:
            pull_request = await forge.find_pull_request(repository, delivery.branch)
            if pull_request is None:
                raise PermanentError(
                    f"{account.kind} {account.api_url}: no open pull request from {delivery.branch} to "
                    f"answer (it was closed or merged meanwhile); the commit {commit[:12]} is on the branch"
                )
            reply = reply_body(delivery.patch.summary, commit)
            if follow_up.thread_id is None:
                await forge.comment(repository, pull_request, reply)
            else:
                await forge.reply_to_review_comment(repository, pull_request, follow_up.thread_id, reply)
        finally:
            await forge.aclose()
        return pull_request

    async def conversation(self, request: FeatureRequest) -> str:
        """A follow-up's review thread so far, as the agent reads it ("" for any other feature, or when the
        forge cannot say: the comment itself is in the request's description already)."""
        follow_up = request.follow_up
        if follow_up is None or follow_up.thread_id is None:
            return ""
        account, repository = self._find_account(request.repository_url)
        forge = open_forge(account)
        try:
            pull_request = await forge.find_pull_request(repository, request.branch)
            comments = (
                await forge.thread(repository, pull_request, follow_up.thread_id) if pull_request else []
            )
        except ForgeError as error:
            log.warning("worker.review_thread_unread", error=str(error))
            return ""
        finally:
            await forge.aclose()
        return "\n\n".join(f"@{comment.author}:\n{comment.body}" for comment in comments)

    async def close(self, request: FeatureRequest, reason: str) -> PullRequest | None:
        """Close the branch's open pull request with the reason as a comment; None when there is none."""
        account, repository = self._find_account(request.repository_url)
        forge = open_forge(account)
        try:
            pull_request = await forge.find_pull_request(repository, branch_of(request))
            if pull_request is not None:
                await forge.close_pull_request(repository, pull_request, f"Closed by the platform: {reason}")
        finally:
            await forge.aclose()
        return pull_request
