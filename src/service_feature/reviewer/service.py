"""The reviewer service: reviews each tested patch and applies the decision.

Approve moves the feature to `delivering` and asks the worker to deliver; reject ends it; needs_human
parks it in `awaiting_approval`. The decision, score and findings are stored with the feature.

When a real LLM provider is configured (and LLM_REVIEW is not false), a model reviews the diff first
(`model_review.py`) and its findings join the scanners'. Its calls wait at the kill switch like the agent's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import shutil
import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.bus.base import Bus
from service_feature.config import ReviewerSettings
from service_feature.events import ReviewRequested
from service_feature.git import Git
from service_feature.killswitch import KillSwitch
from service_feature.lifecycle import FeatureStatus
from service_feature.llm.base import LLMProvider, ProviderError
from service_feature.llm.factory import provider_from_settings
from service_feature.llm.gated import GatedProvider
from service_feature.llm.pricing import cost_usd
from service_feature.metrics import STAGE_DURATION, count_llm_usage
from service_feature.models import Decision, FeatureRequest, ReviewResult, Specification, TestResult
from service_feature.reviewer.model_review import (
    MAX_DIFF_CHARS,
    ModelReview,
    failure_finding,
    model_review,
)
from service_feature.reviewer.review import ReviewInput, ReviewPolicy, review
from service_feature.store.database import Database
from service_feature.store.features import execution_for, move, patch_for, request_delivery
from service_feature.store.outbox import OutboxRelay
from service_feature.store.steps import Step, Steps, at, request_of
from service_feature.store.tables import Feature, Review

log = structlog.get_logger(__name__)

CONSUMER = "reviewer"
_NEXT_STATUS = {
    Decision.approve: FeatureStatus.delivering,
    Decision.reject: FeatureStatus.rejected,
    Decision.needs_human: FeatureStatus.awaiting_approval,
}


class ReviewerService:
    name = "reviewer"

    def __init__(
        self,
        settings: ReviewerSettings,
        database: Database,
        bus: Bus,
        relay: OutboxRelay,
        git: Git,
        switch: KillSwitch,
    ) -> None:
        self._switch = switch
        self._settings = settings
        self._database = database
        self._bus = bus
        self._steps = Steps(database, relay)
        self._git = git
        self._policy = ReviewPolicy(
            max_risk_score=settings.max_risk_score,
            max_critical_issues=settings.max_critical_issues,
            block_on_secrets=settings.block_on_secrets,
            max_changed_lines=settings.max_changed_lines,
        )

    async def stop(self) -> None:
        if "_model" in vars(self):  # built on first use only
            await self._model.aclose()

    async def start(self) -> None:
        await self._bus.consume(
            ReviewRequested.subject,
            CONSUMER,
            self._steps.handler(CONSUMER, ReviewRequested, self.review),
            concurrency=2,
            gate=self._switch.wait_released,
        )

    async def _model_review(self, execution_id: str, spec: Specification, diff: str) -> ModelReview | None:
        """The model's review of the diff; None when no real provider is configured."""
        if not self._settings.model_review_enabled or not diff.strip():
            return None
        try:
            provider = self._model
        except ProviderError as error:  # e.g. LLM_PROVIDER=openai without a key or a base URL
            return ModelReview([failure_finding(error)])
        # Half the model's window for the diff, at about four characters a token.
        budget = min(MAX_DIFF_CHARS, self._settings.llm_context_tokens * 2)
        result = await model_review(provider, spec, diff, max_diff_chars=budget)
        log.info(
            "reviewer.model_review",
            execution_id=execution_id,
            model=result.model,
            findings=[finding.rule_id for finding in result.findings],
            summary=result.summary,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cost_usd=round(cost_usd(result.model, result.usage), 6),
        )
        return result

    def _charge(self, feature: Feature, result: ModelReview) -> dict[str, Any]:
        """Add the model review's tokens and dollars to the feature's (its cost budget counts them too) and
        to the metrics; returns them as stored with the review."""
        usage = result.usage
        cost = cost_usd(result.model, usage)
        feature.input_tokens += usage.input_tokens
        feature.output_tokens += usage.output_tokens
        feature.cached_input_tokens += usage.cached_input_tokens
        feature.cost_usd += cost
        tokens = dataclasses.asdict(usage)
        count_llm_usage(self._settings.resolved_llm_provider, result.model or "unknown", tokens, cost)
        return {"model": result.model, **tokens, "cost_usd": round(cost, 6)}

    @functools.cached_property
    def _model(self) -> LLMProvider:
        """One client per process, behind the kill switch: no model call starts while it is engaged."""
        return GatedProvider(provider_from_settings(self._settings), self._switch.wait_released)

    async def review(self, step: Step[ReviewRequested]) -> None:
        attempt = step.event.attempt
        current = at(FeatureStatus.reviewing, attempt=attempt)
        subject = await step.read(current, _review_subject)
        if subject is None:
            return
        request, base_commit, diff, tests = subject
        with STAGE_DURATION.labels("review").time():
            model = await self._model_review(step.execution_id, request.specification, diff)
            result = await self._scan(request, base_commit, diff, tests, model)
        log.info(
            "reviewer.decided",
            execution_id=step.execution_id,
            decision=result.decision,
            risk=result.risk_score,
        )

        def decide(session: AsyncSession, feature: Feature) -> None:
            stored = result.model_dump(mode="json")
            if model is not None:
                stored["model_review"] = self._charge(feature, model)
            session.add(
                Review(
                    execution_id=feature.execution_id,
                    attempt=attempt,
                    decision=result.decision.value,
                    risk_score=result.risk_score,
                    result=stored,
                )
            )
            feature.review_summary = result.summary()
            reason = "; ".join(result.reasons) if result.decision is not Decision.approve else None
            move(session, feature, _NEXT_STATUS[result.decision], reason=reason, detail=result.summary())
            if result.decision is Decision.approve:
                request_delivery(session, feature)
            elif result.decision is Decision.needs_human:
                request_delivery(session, feature, draft=True)

        await step.commit(current, decide)

    async def _scan(
        self,
        request: FeatureRequest,
        base_commit: str,
        diff: str,
        tests: TestResult | None,
        model: ModelReview | None,
    ) -> ReviewResult:
        """The scanners over the patched tree beside the base tree, with the model's findings."""
        mirror = await self._git.mirror(request.repository_url, commit=base_commit)
        run = self._git.root / "reviews" / f"{request.execution_id}-{uuid.uuid4().hex[:8]}"
        patched, base = run / "patched", run / "base"
        try:
            await self._git.worktree(mirror, patched, base_commit)
            await self._git.apply(patched, diff)
            await self._git.worktree(mirror, base, base_commit)
            subject = ReviewInput(
                request.specification,
                diff,
                tests,
                patched_tree=patched,
                extra_findings=model.findings if model else [],
                base_tree=base,
            )
            # The scanners read files and run bandit: off the event loop.
            return await asyncio.to_thread(review, subject, self._policy)
        finally:
            await self._git.remove_worktree(mirror, patched)
            await self._git.remove_worktree(mirror, base)
            await asyncio.to_thread(shutil.rmtree, run, True)


async def _review_subject(
    session: AsyncSession, feature: Feature
) -> tuple[FeatureRequest, str, str, TestResult | None]:
    """The request, base commit, patch and test result of the feature's current attempt."""
    patch = await patch_for(session, feature.execution_id, feature.attempts)
    execution = await execution_for(session, feature.execution_id, feature.attempts)
    assert patch is not None and feature.base_commit is not None
    tests = TestResult.model_validate(execution.result) if execution else None
    return request_of(feature), feature.base_commit, patch.diff, tests
