"""Forge webhooks in: an issue labelled for the platform (or a comment mentioning it) becomes a feature
delivered as a pull request; a review comment on one of the platform's pull requests that mentions it
becomes a follow-up on that pull request's branch.

`POST /api/v1/webhooks/{github|gitlab|gitea}` answers only when the forge's secret is set
(SF_WEBHOOK_SECRET_<FORGE>); the signature is the authentication (no API key). What a delivery may do is
limited as a key's submissions are: the repositories and forge users allowed (SF_WEBHOOK_REPOSITORIES,
SF_WEBHOOK_USERS; empty allows none), the submission rate and open-feature limits (per forge), and the
kill switch (503 while engaged: the forge shows the failed delivery and can redeliver it). A delivery is
read once: the feature's id is derived from what asked for it (the issue, the comment), so a redelivery
or a replayed body finds the feature made already.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the parameter annotations.
import fnmatch
import hashlib
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from service_feature.auth import Principal, Role
from service_feature.config import GatewaySettings
from service_feature.forges.base import ForgeKind
from service_feature.forges.webhooks import (
    IssueTrigger,
    ReviewCommentTrigger,
    Trigger,
    WebhookConfig,
    WebhookRejected,
    receive,
)
from service_feature.gateway.deps import GatewayDep
from service_feature.gateway.route import GatewayRoute
from service_feature.gateway.submissions import check_repository, create_request, limit_rate
from service_feature.models import DeliveryMode, FeatureRequest, FollowUp, Language

webhooks_router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], route_class=GatewayRoute)

_TITLE_LIMIT = 200
_DESCRIPTION_LIMIT = 20_000
_LANGUAGE_LABEL = "language:"
PLATFORM_BRANCH_PREFIX = "feature/"


@webhooks_router.post("/{forge}", status_code=status.HTTP_202_ACCEPTED)
async def receive_webhook(forge: ForgeKind, request: Request, gateway: GatewayDep) -> JSONResponse:
    """A forge's webhook delivery: 202 with the feature it started, 200 when there was nothing to do
    (another event, another label, a repeat), 401/400/413 for a delivery that is not the forge's."""
    settings = gateway.settings
    config = webhook_config(settings, forge)
    try:
        trigger = receive(forge, request.headers, await request.body(), config)
    except WebhookRejected as error:
        raise HTTPException(error.status_code, detail=error.reason) from None
    if trigger is None:
        return _answer(status.HTTP_200_OK, "ignored", reason="not an event the platform acts on")
    if isinstance(trigger, ReviewCommentTrigger) and not trigger.head.startswith(PLATFORM_BRANCH_PREFIX):
        return _answer(status.HTTP_200_OK, "ignored", reason="not a pull request the platform opened")
    check_allowed(settings, trigger)
    if gateway.switch is not None and gateway.switch.engaged:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="the kill switch is engaged: no new features until it is released",
            headers={"Retry-After": "300"},
        )
    principal = webhook_principal(forge)
    feature_request = feature_request_of(trigger, settings.webhook_language)
    await limit_rate(gateway, principal)
    await check_repository(gateway, feature_request)
    created = await create_request(gateway, feature_request, principal)
    if created is None:
        return _answer(status.HTTP_200_OK, "duplicate", execution_id=feature_request.execution_id)
    gateway.relay.wake()
    return _answer(status.HTTP_202_ACCEPTED, "accepted", execution_id=feature_request.execution_id)


def webhook_config(settings: GatewaySettings, forge: ForgeKind) -> WebhookConfig:
    secret = settings.webhook_secret(forge.value)
    if secret is None or not secret.get_secret_value():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"{forge.value} webhooks are off here (set SF_WEBHOOK_SECRET_{forge.value.upper()})",
        )
    return WebhookConfig(
        secret=secret.get_secret_value(),
        label=settings.webhook_label,
        handle=settings.webhook_handle,
        max_body_bytes=settings.max_body_bytes,
    )


def webhook_principal(forge: ForgeKind) -> Principal:
    """Who a webhook's features are submitted by: one submitter per forge, so its rate and open-feature
    limits are the forge's, and admins and readers see its features."""
    return Principal(key_id=f"webhook-{forge.value}", name=f"{forge.value} webhook", role=Role.submitter)


def check_allowed(settings: GatewaySettings, trigger: Trigger) -> None:
    """403 unless both the repository and the forge user who asked are allowed."""
    repositories = _patterns(settings.webhook_repositories)
    if not any(fnmatch.fnmatchcase(trigger.repository, pattern) for pattern in repositories):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"repository {trigger.repository} may not trigger features (SF_WEBHOOK_REPOSITORIES)",
        )
    users = _patterns(settings.webhook_users)
    if "*" not in users and trigger.author not in users:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"forge user {trigger.author} may not trigger features (SF_WEBHOOK_USERS)",
        )


def _patterns(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _answer(code: int, outcome: str, **fields: Any) -> JSONResponse:
    return JSONResponse({"status": outcome, **fields}, status_code=code)


# -- triggers to requests (pure) ---------------------------------------------------------------------


def feature_request_of(trigger: Trigger, default_language: Language) -> FeatureRequest:
    if isinstance(trigger, IssueTrigger):
        return _from_issue(trigger, default_language)
    return _from_review_comment(trigger, default_language)


def trigger_id(trigger: Trigger) -> str:
    """The feature's id, from what asked for it: one feature per issue (labelled again, or a label event
    Gitea repeats, it is the same one), one per comment mentioning the platform, one per review-comment
    delivery; a redelivered or replayed webhook names the same feature."""
    if isinstance(trigger, IssueTrigger):
        asked_by = f"comment:{trigger.comment_id}" if trigger.comment_id else "issue"
    else:
        asked_by = f"review:{trigger.delivery_id}"
    source = f"{trigger.forge}|{trigger.repository}|{trigger.number}|{asked_by}"
    return f"{trigger.forge.value}-{hashlib.sha256(source.encode()).hexdigest()[:32]}"


def _from_issue(trigger: IssueTrigger, default_language: Language) -> FeatureRequest:
    description = trigger.body
    if trigger.comment:
        description += f"\n\nAsked in a comment by @{trigger.author}:\n{trigger.comment}"
    description += f"\n\n(From issue #{trigger.number} of {trigger.repository}.)"
    return FeatureRequest.model_validate(
        {
            "execution_id": trigger_id(trigger),
            "repository_url": trigger.clone_url,
            "branch": trigger.default_branch,
            "specification": {
                "title": _title(trigger.title),
                "description": _description(description),
                "language": _language(trigger.labels, default_language),
            },
            "delivery": DeliveryMode.pull_request,
        }
    )


def _from_review_comment(trigger: ReviewCommentTrigger, default_language: Language) -> FeatureRequest:
    where = f" on {trigger.path}" + (f" line {trigger.line}" if trigger.line else "") if trigger.path else ""
    description = f"A reviewer (@{trigger.author}) commented{where} on pull request #{trigger.number}:\n\n"
    description += trigger.body
    if trigger.diff_hunk:
        description += f"\n\nThe part of the diff the comment refers to:\n```diff\n{trigger.diff_hunk}\n```"
    description += "\n\nChange the code on this branch to address the comment."
    first_line = trigger.body.strip().splitlines()[0] if trigger.body.strip() else "review comment"
    return FeatureRequest.model_validate(
        {
            "execution_id": trigger_id(trigger),
            "repository_url": trigger.clone_url,
            "branch": trigger.head,
            "specification": {
                "title": _title(f"Review on #{trigger.number}: {first_line}"),
                "description": _description(description),
                "language": default_language,
            },
            "delivery": DeliveryMode.pull_request,
            "follow_up": FollowUp(pull_request=trigger.number, thread_id=trigger.thread_id),
        }
    )


def _title(text: str) -> str:
    """One line of at most the title's limit: control characters would be refused (they could forge
    commit trailers)."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return (line or "feature from a forge")[:_TITLE_LIMIT]


def _description(text: str) -> str:
    return text.replace("\x00", "")[:_DESCRIPTION_LIMIT]


def _language(labels: tuple[str, ...], default: Language) -> Language:
    """`language:go` among the issue's labels picks the language; otherwise SF_WEBHOOK_LANGUAGE."""
    for label in labels:
        name = label.lower().removeprefix(_LANGUAGE_LABEL)
        if label.lower().startswith(_LANGUAGE_LABEL) and name in Language.__members__:
            return Language(name)
    return default
