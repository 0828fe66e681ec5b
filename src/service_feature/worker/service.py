"""The worker service: checkout, the agent, the test-and-retry loop, and delivery.

Between checkout and the agent, the executor prepares the base commit (dependency setup and the baseline
test run): a base that cannot be tested fails the feature there, before any model call, with the reason.

Each step is one handler over one durable subject and ends in one transaction that records its effect,
the status change, the processed-message mark and the next step's event (the outbox). A crash anywhere
before that commit means the message is redelivered and the step is redone from its start; after the
commit the step is never redone.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from service_feature.bus.base import Bus, Delivery, PermanentError
from service_feature.config import WorkerSettings
from service_feature.events import Envelope, EventType, Subjects
from service_feature.git import Author, Git, GitError, RepositoryRefused
from service_feature.killswitch import KillSwitch
from service_feature.lifecycle import FeatureStatus
from service_feature.llm.base import LLMProvider, ProviderError, Usage
from service_feature.llm.factory import provider_from_settings
from service_feature.llm.gated import GatedProvider
from service_feature.llm.pricing import cost_usd, price_for
from service_feature.llm.scripted import ScriptedProvider, load_script
from service_feature.metrics import STAGE_DURATION, count_llm_usage
from service_feature.models import FeatureRequest, TestResult
from service_feature.patchcheck import check_patch_paths
from service_feature.store.database import Database
from service_feature.store.features import (
    claim_message,
    create_feature,
    emit,
    fail_feature,
    find_feature,
    latest_review,
    move,
    patch_for,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Feature, Patch, TranscriptEntry
from service_feature.worker.agent import AgentError, Budget, Recorder, run_agent, task_message
from service_feature.worker.reasons import never_passed_reason, preparation_summary, untestable_reason
from service_feature.worker.repomap import build_repo_map
from service_feature.worker.tools import Toolbox, describe_tests

log = structlog.get_logger(__name__)

_CHECKOUT_FROM = frozenset({FeatureStatus.queued, FeatureStatus.checking_out})


class WorkerService:
    name = "worker"

    def __init__(
        self,
        settings: WorkerSettings,
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
        self._relay = relay
        self._git = git

    async def stop(self) -> None:
        if "_api_provider" in vars(self):  # built on first use only
            await self._api_provider.aclose()

    async def start(self) -> None:
        concurrency = self._settings.worker_concurrency
        consumers = (
            (Subjects.FEATURE_REQUESTS, "worker-requests", self.handle_request),
            (Subjects.ENVIRONMENT_COMPLETED, "worker-environment", self.handle_environment_completed),
            (Subjects.ATTEMPT_REQUESTED, "worker-attempts", self.handle_generate),
            (Subjects.TESTS_COMPLETED, "worker-test-results", self.handle_tests_completed),
            (Subjects.DELIVERY_REQUESTED, "worker-delivery", self.handle_delivery),
        )
        for subject, durable, handler in consumers:
            await self._bus.consume(
                subject, durable, handler, concurrency=concurrency, gate=self._switch.wait_released
            )

    # -- checkout: the base commit, then its preparation by the executor ---------------------------------

    async def handle_request(self, delivery: Delivery) -> None:
        """Resolve the branch to the base commit and ask the executor to prepare it."""
        envelope = delivery.envelope
        async with self._database.transaction() as session:
            feature = await self._feature_for(session, envelope)
            status = FeatureStatus(feature.status)
            if status is FeatureStatus.queued:
                move(session, feature, FeatureStatus.checking_out)
            request = FeatureRequest.model_validate(feature.request)
            # Checked out before the preparation step existed (a request in flight across an upgrade): its
            # first attempt is generated straight away, as it was then.
            unprepared = status is FeatureStatus.generating and feature.preparation is None
        self._relay.wake()
        if unprepared:
            await self.handle_generate(delivery)
            return
        if status not in _CHECKOUT_FROM:
            return  # a redelivery of a step already done, or the feature ended meanwhile
        base_commit = await self._base_commit(request)
        if base_commit is not None:
            await self._request_preparation(envelope, base_commit)

    async def _base_commit(self, request: FeatureRequest) -> str | None:
        """The commit the request's branch points at now; None when the checkout failed the feature."""
        log.info("worker.checkout", execution_id=request.execution_id)
        try:
            with STAGE_DURATION.labels("checkout").time():
                mirror = await self._git.mirror(request.repository_url)
                return await self._git.resolve_branch(mirror, request.branch)
        except (GitError, RepositoryRefused) as error:
            await self.fail(request.execution_id, f"checkout failed: {error}")
            return None

    async def _request_preparation(self, envelope: Envelope, base_commit: str) -> None:
        async with self._database.transaction() as session:
            if not await claim_message(session, "worker-checkout", envelope.event_id):
                return
            feature = await self._require(session, envelope.execution_id)
            if feature.status != FeatureStatus.checking_out:
                return
            feature.base_commit = base_commit
            move(session, feature, FeatureStatus.preparing, detail={"base_commit": base_commit})
            emit(
                session,
                Subjects.ENVIRONMENT_REQUESTED,
                EventType.ENVIRONMENT_REQUESTED,
                feature.execution_id,
                {"base_commit": base_commit},
            )
        self._relay.wake()

    async def handle_environment_completed(self, delivery: Delivery) -> None:
        """A base that cannot be tested fails the feature before any model call; otherwise attempt 1."""
        envelope = delivery.envelope
        result = TestResult.model_validate(envelope.payload["result"])
        async with self._database.transaction() as session:
            if not await claim_message(session, "worker-environment", envelope.event_id):
                return
            feature = await find_feature(session, envelope.execution_id)
            if feature is None or feature.status != FeatureStatus.preparing:
                return
            feature.preparation = preparation_summary(result)
            if result.untestable:
                reason = untestable_reason(result)
                log.warning("worker.base_untestable", execution_id=feature.execution_id, reason=reason)
                move(session, feature, FeatureStatus.failed, reason=reason)
            else:
                move(session, feature, FeatureStatus.generating, detail={"attempt": 1})
                emit(
                    session,
                    Subjects.ATTEMPT_REQUESTED,
                    EventType.ATTEMPT_REQUESTED,
                    feature.execution_id,
                    {"attempt": 1},
                )
        self._relay.wake()

    # -- generate: worktree + agent + diff -------------------------------------------------------------

    async def handle_generate(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        async with self._database.transaction() as session:
            feature = await self._require(session, envelope.execution_id)
            expected_attempt = feature.attempts + 1
            if feature.status != FeatureStatus.generating:
                return  # a redelivery of a step already done, or the feature ended meanwhile
            if (
                envelope.type == EventType.ATTEMPT_REQUESTED
                and envelope.payload.get("attempt") != expected_attempt
            ):
                return
            request = FeatureRequest.model_validate(feature.request)
            base_commit, start_turn = feature.base_commit, feature.agent_turns
            budget = Budget(
                max_tokens=self._settings.max_tokens_per_feature,
                max_cost_usd=self._settings.max_cost_usd_per_feature,
                spent_tokens=feature.input_tokens + feature.output_tokens,
                spent_cost_usd=feature.cost_usd,
                context_tokens=self._settings.llm_context_tokens,
            )
            previous = await patch_for(session, request.execution_id, expected_attempt - 1)
        assert base_commit is not None  # set by the checkout, before preparing
        log.info("worker.generate", execution_id=envelope.execution_id, attempt=expected_attempt)

        try:
            with STAGE_DURATION.labels("checkout").time():
                mirror = await self._git.mirror(request.repository_url, commit=base_commit)
                worktree = await self._git.worktree(
                    mirror, self._worktree_path(request.execution_id), base_commit
                )
        except (GitError, RepositoryRefused) as error:
            await self.fail(request.execution_id, f"checkout failed: {error}")
            return
        # The map of the base commit, before the previous attempt's patch: the same text on every attempt,
        # so the cached prompt prefix survives retries.
        repo_map = await asyncio.to_thread(
            build_repo_map, worktree, request.specification.target_files, self._settings.repo_map_tokens
        )
        if previous is not None:
            await self._git.apply(worktree, previous.diff)

        transcript: list[tuple[str, dict[str, Any]]] = []
        try:
            provider = self._provider(request.execution_id, start_turn)
            toolbox = Toolbox(worktree, lambda: self._run_tests_now(request, base_commit, worktree))
            prompt = task_message(request.specification, envelope.payload.get("feedback"))
            with STAGE_DURATION.labels("agent").time():
                result = await run_agent(
                    provider,
                    toolbox,
                    prompt,
                    max_turns=self._settings.max_agent_turns,
                    record=_recorder(transcript, provider.name),
                    repo_map=repo_map,
                    budget=budget,
                )
        except (AgentError, ProviderError) as error:
            await self.fail(request.execution_id, str(error), transcript=(expected_attempt, transcript))
            return
        diff = await self._git.diff(worktree, base_commit)
        if refusal := await refuse_unsafe(self._git, worktree, base_commit, diff):
            await self.fail(request.execution_id, refusal, transcript=(expected_attempt, transcript))
            return

        async with self._database.transaction() as session:
            if not await claim_message(session, "worker-generate", envelope.event_id):
                return
            feature = await self._require(session, request.execution_id)
            if feature.status != FeatureStatus.generating or feature.attempts != expected_attempt - 1:
                return
            session.add(
                Patch(
                    execution_id=feature.execution_id,
                    attempt=expected_attempt,
                    diff=diff,
                    summary=result.summary,
                )
            )
            self._store_transcript(session, feature, expected_attempt, transcript)
            feature.attempts = expected_attempt
            move(
                session,
                feature,
                FeatureStatus.testing,
                detail={"attempt": expected_attempt, "summary": result.summary, "diff_bytes": len(diff)},
            )
            emit(
                session,
                Subjects.TESTS_REQUESTED,
                EventType.TESTS_REQUESTED,
                feature.execution_id,
                {"attempt": expected_attempt},
            )
        self._relay.wake()

    async def _feature_for(self, session: Any, envelope: Envelope) -> Feature:
        """The feature an event is about; a bare request published straight to the bus creates it."""
        feature = await find_feature(session, envelope.execution_id)
        if feature is not None:
            return feature
        if envelope.type != EventType.FEATURE_REQUESTED:
            raise PermanentError(f"no feature {envelope.execution_id} for a {envelope.type} event")
        try:
            request = FeatureRequest.model_validate(envelope.payload.get("request"))
        except ValidationError as error:
            raise PermanentError(f"invalid feature request: {error.errors()[0]['msg']}") from None
        return await create_feature(session, request, announce=False)

    async def _require(self, session: Any, execution_id: str) -> Feature:
        feature = await find_feature(session, execution_id)
        if feature is None:
            raise PermanentError(f"feature {execution_id} disappeared")
        return feature

    def _provider(self, execution_id: str, start_turn: int) -> LLMProvider:
        """The configured provider, behind the kill switch: no model call starts while it is engaged."""
        return GatedProvider(self._make_provider(execution_id, start_turn), self._switch.wait_released)

    def _make_provider(self, execution_id: str, start_turn: int) -> LLMProvider:
        if self._settings.resolved_llm_provider == "scripted":
            if self._settings.llm_script is None:
                raise ProviderError("LLM_PROVIDER=scripted needs LLM_SCRIPT (a JSON file or a directory)")
            return ScriptedProvider(
                load_script(self._settings.llm_script, execution_id), start_turn=start_turn
            )
        return self._api_provider

    @functools.cached_property
    def _api_provider(self) -> LLMProvider:
        """One client per process for a real API: features share its connection pool."""
        return provider_from_settings(self._settings)

    async def _run_tests_now(self, request: FeatureRequest, base_commit: str, worktree: Path) -> TestResult:
        """The agent's run_tests tool: an interactive executor run of the current working tree."""
        spec = {
            "execution_id": request.execution_id,
            "repository_url": request.repository_url,
            "base_commit": base_commit,
            "diff": await self._git.diff(worktree, base_commit),
            "language": request.specification.language.value,
            "test_command": request.test_command,
        }
        reply = await self._bus.request(
            Subjects.EXECUTOR_RUN, json.dumps(spec).encode(), timeout=self._settings.tool_timeout_seconds
        )
        return TestResult.model_validate_json(reply)

    def _store_transcript(
        self, session: Any, feature: Feature, attempt: int, transcript: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """Store the attempt's transcript and add its model calls to the feature's turns, tokens and cost."""
        for kind, content in transcript:
            session.add(
                TranscriptEntry(
                    execution_id=feature.execution_id, attempt=attempt, kind=kind, content=content
                )
            )
            if kind == "model":
                usage = Usage(**content["usage"])
                feature.agent_turns += 1
                feature.input_tokens += usage.input_tokens
                feature.output_tokens += usage.output_tokens
                feature.cached_input_tokens += usage.cached_input_tokens
                feature.cost_usd += cost_usd(str(content.get("model") or ""), usage)

    # -- tests done: review, retry or fail -------------------------------------------------------------

    async def handle_tests_completed(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        attempt = int(envelope.payload["attempt"])
        result = TestResult.model_validate(envelope.payload["result"])
        async with self._database.transaction() as session:
            if not await claim_message(session, "worker-test-results", envelope.event_id):
                return
            feature = await find_feature(session, envelope.execution_id)
            if feature is None or feature.status != FeatureStatus.testing or feature.attempts != attempt:
                return
            feature.test_summary = result.summary()
            if result.succeeded:
                move(session, feature, FeatureStatus.reviewing, detail={"attempt": attempt})
                emit(
                    session,
                    Subjects.REVIEW_REQUESTED,
                    EventType.REVIEW_REQUESTED,
                    feature.execution_id,
                    {"attempt": attempt},
                )
            elif attempt < self._settings.max_attempts:
                move(
                    session,
                    feature,
                    FeatureStatus.generating,
                    reason=f"tests failed on attempt {attempt}",
                    detail={"attempt": attempt + 1},
                )
                emit(
                    session,
                    Subjects.ATTEMPT_REQUESTED,
                    EventType.ATTEMPT_REQUESTED,
                    feature.execution_id,
                    {"attempt": attempt + 1, "feedback": describe_tests(result)},
                )
            else:
                move(
                    session,
                    feature,
                    FeatureStatus.failed,
                    reason=never_passed_reason(result, attempt),
                )
        self._relay.wake()

    # -- delivery --------------------------------------------------------------------------------------

    async def handle_delivery(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        async with self._database.transaction() as session:
            feature = await find_feature(session, envelope.execution_id)
            if feature is None or feature.status != FeatureStatus.delivering:
                return
            patch = await patch_for(session, feature.execution_id, feature.attempts)
            review = await latest_review(session, feature.execution_id)
            request = FeatureRequest.model_validate(feature.request)
            base_commit, created_at = feature.base_commit, feature.created_at
        assert patch is not None and base_commit is not None
        branch = f"feature/{request.execution_id}"
        path = self._worktree_path(request.execution_id)
        try:
            with STAGE_DURATION.labels("delivery").time():
                mirror = await self._git.mirror(request.repository_url, commit=base_commit)
                worktree = await self._git.worktree(mirror, path, base_commit)
                if refusal := await refuse_unsafe(self._git, worktree, base_commit, patch.diff):
                    await self.fail(request.execution_id, refusal)
                    return
                await self._git.apply(worktree, patch.diff)
                message = commit_message(request, patch.summary, review.result if review else None)
                author = Author(self._settings.git_author_name, self._settings.git_author_email)
                commit = await self._git.commit(worktree, message, author, created_at.isoformat())
                await self._git.push(worktree, request.repository_url, commit, branch)
        except (GitError, RepositoryRefused) as error:
            await self.fail(request.execution_id, f"delivery failed: {error}")
            return
        async with self._database.transaction() as session:
            if not await claim_message(session, "worker-delivery", envelope.event_id):
                return
            feature = await self._require(session, request.execution_id)
            if feature.status != FeatureStatus.delivering:
                return
            feature.delivered_branch, feature.delivered_commit = branch, commit
            move(session, feature, FeatureStatus.delivered, detail={"branch": branch, "commit": commit})
        self._relay.wake()
        await self._git.remove_worktree(mirror, path)
        log.info("worker.delivered", execution_id=request.execution_id, branch=branch, commit=commit)

    # -- shared ----------------------------------------------------------------------------------------

    def _worktree_path(self, execution_id: str) -> Path:
        return self._git.root / "features" / execution_id

    async def fail(
        self,
        execution_id: str,
        reason: str,
        *,
        transcript: tuple[int, list[tuple[str, dict[str, Any]]]] | None = None,
    ) -> None:
        log.warning("worker.feature_failed", execution_id=execution_id, reason=reason)
        async with self._database.transaction() as session:
            feature = await find_feature(session, execution_id)
            if feature is not None and transcript:
                self._store_transcript(session, feature, *transcript)
            await fail_feature(session, execution_id, reason)
        self._relay.wake()
        shutil.rmtree(self._worktree_path(execution_id), ignore_errors=True)


async def refuse_unsafe(git: Git, worktree: Path, base_commit: str, diff: str) -> str | None:
    """Why the patch must not be committed (a write through a symlink, into .git/, outside), if so."""
    problems = check_patch_paths(diff, base_symlinks=await git.symlinks(worktree, base_commit))
    return f"patch refused: {'; '.join(problems)}" if problems else None


def _recorder(transcript: list[tuple[str, dict[str, Any]]], provider: str) -> Recorder:
    """Keep the transcript for storage and count the tokens and dollars each model call used."""
    unpriced: set[str] = set()

    def record(kind: str, content: dict[str, Any]) -> None:
        transcript.append((kind, content))
        if kind == "model":
            model = str(content.get("model") or "unknown")
            count_llm_usage(provider, model, content.get("usage", {}), content.get("cost_usd", 0.0))
            if provider != "scripted" and model not in unpriced and price_for(model) is None:
                unpriced.add(model)  # once per attempt: cost and the cost budget read 0 for this model
                log.warning(
                    "worker.llm_model_unpriced", provider=provider, model=model, fix="LLM_PRICES_JSON"
                )

    return record


_FINDINGS_IN_MESSAGE = 20


def commit_message(request: FeatureRequest, summary: str, review: dict[str, Any] | None) -> str:
    """The delivered commit's message: the request, the agent's summary, and the review that let it
    through (decision, score, reasons, findings), so the branch explains itself without the platform."""
    spec = request.specification
    lines = [spec.title, ""]
    if spec.description:
        lines += [spec.description, ""]
    if spec.requirements:
        lines += ["Requirements:", *(f"- {item}" for item in spec.requirements), ""]
    if summary:
        lines += [f"Agent summary: {summary}", ""]
    if review:
        lines += [f"Review: {review.get('decision')} (risk score {review.get('risk_score')})"]
        lines += [f"- {reason}" for reason in review.get("reasons", [])]
        findings = review.get("findings", [])
        if findings:
            lines += ["", "Findings:"]
            for finding in findings[:_FINDINGS_IN_MESSAGE]:
                where = (
                    f" {finding['file']}:{finding.get('line') or ''}".rstrip(":")
                    if finding.get("file")
                    else ""
                )
                lines += [f"- [{finding['severity']}] {finding['rule_id']}{where}: {finding['message']}"]
            if len(findings) > _FINDINGS_IN_MESSAGE:
                lines += [
                    f"- … and {len(findings) - _FINDINGS_IN_MESSAGE} more (GET /api/v1/features/<id>/review)"
                ]
        lines += [""]
    lines += [f"Execution-Id: {request.execution_id}"]
    return "\n".join(lines) + "\n"
