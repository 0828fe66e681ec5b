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
import contextlib
import functools
import shutil
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature import __version__
from service_feature.bus.base import Bus
from service_feature.config import WorkerSettings
from service_feature.diffs import changed_paths
from service_feature.errors import PermanentError, TransientError
from service_feature.events import (
    AttemptRequested,
    ClosureRequested,
    CommandResult,
    CommandSpec,
    DeliveryRequested,
    EnvironmentCompleted,
    EnvironmentRequested,
    FeatureRequested,
    ReviewRequested,
    RunSpec,
    Subjects,
    TestsCompleted,
    TestsRequested,
)
from service_feature.forges.base import PullRequest
from service_feature.git import Author, Git, GitError, RepositoryRefused
from service_feature.killswitch import KillSwitch
from service_feature.lifecycle import FeatureStatus
from service_feature.llm.base import LLMProvider, ProviderError, Usage
from service_feature.llm.factory import provider_from_settings
from service_feature.llm.gated import GatedProvider
from service_feature.llm.pricing import cost_usd, price_for
from service_feature.llm.scripted import ScriptedProvider, load_script
from service_feature.metrics import STAGE_DURATION, count_llm_usage
from service_feature.models import DeliveryMode, FeatureRequest, TestResult
from service_feature.patchcheck import check_patch_paths
from service_feature.store.database import Database
from service_feature.store.features import (
    append_event,
    claim_message,
    create_feature,
    emit,
    find_feature,
    move,
    patch_for,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.steps import Step, Steps, at, request_of
from service_feature.store.tables import Feature, Patch, TranscriptEntry
from service_feature.worker.agent import AgentError, AgentResult, Budget, Recorder, run_agent, task_message
from service_feature.worker.delivery import Delivery, PullRequests, load_delivery, mode_of
from service_feature.worker.instructions import Instructions, read_instructions
from service_feature.worker.mcp_tools import connected, parse_servers
from service_feature.worker.reasons import never_passed_reason, preparation_summary, untestable_reason
from service_feature.worker.repomap import build_repo_map
from service_feature.worker.tools import Toolbox, ToolError, describe_command, describe_tests

log = structlog.get_logger(__name__)

_CHARS_PER_TOKEN = 4  # about, for English and code: what a token budget allows of a file's text
_CHECKOUT_FROM = frozenset({FeatureStatus.queued, FeatureStatus.checking_out})
# A feature that ended undelivered: its pull request, if any, is closed.
_CLOSING = frozenset(
    {FeatureStatus.cancelled.value, FeatureStatus.rejected.value, FeatureStatus.failed.value}
)


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
        self._git = git
        self._steps = Steps(database, relay)
        self._pull_requests = PullRequests(settings)
        secret = settings.mcp_servers_json
        self._mcp_servers = parse_servers(secret.get_secret_value() if secret else None)  # checked at start

    async def stop(self) -> None:
        if "_api_provider" in vars(self):  # built on first use only
            await self._api_provider.aclose()

    async def start(self) -> None:
        consumers: tuple[tuple[str, type[Any], Callable[[Any], Awaitable[None]]], ...] = (
            ("worker-requests", FeatureRequested, self.check_out),
            ("worker-environment", EnvironmentCompleted, self.start_or_stop),
            ("worker-attempts", AttemptRequested, self.generate),
            ("worker-test-results", TestsCompleted, self.judge_tests),
            ("worker-delivery", DeliveryRequested, self.deliver),
            ("worker-closures", ClosureRequested, self.close),
        )
        for durable, event_type, handle in consumers:
            await self._bus.consume(
                event_type.subject,
                durable,
                self._steps.handler(durable, event_type, handle),
                concurrency=self._settings.worker_concurrency,
                gate=self._switch.wait_released,
            )

    # -- checkout: the base commit, then its preparation by the executor ---------------------------------

    async def check_out(self, step: Step[FeatureRequested]) -> None:
        """Resolve the branch to the base commit and ask the executor to prepare it."""
        feature = await self._accept(step)
        if feature is None:
            return
        base_commit = await self._base_commit(request_of(feature))

        def prepare(session: AsyncSession, feature: Feature) -> None:
            feature.base_commit = base_commit
            move(session, feature, FeatureStatus.preparing, detail={"base_commit": base_commit})
            emit(session, feature.execution_id, EnvironmentRequested(base_commit=base_commit))

        await step.commit(at(FeatureStatus.checking_out), prepare)

    async def _accept(self, step: Step[FeatureRequested]) -> Feature | None:
        """The feature, moved to `checking_out`; a bare request published straight to the bus creates it.
        None when the checkout is done already or the feature ended."""
        async with self._database.transaction() as session:
            feature = await find_feature(session, step.execution_id)
            if feature is None:
                feature = await create_feature(session, step.event.request, announce=False)
            status = FeatureStatus(feature.status)
            if status is FeatureStatus.queued:
                move(session, feature, FeatureStatus.checking_out)
            elif (
                status is FeatureStatus.generating
                and feature.preparation is None
                and await claim_message(session, step.consumer, step.event_id)
            ):
                # Checked out before the preparation step existed (a request in flight across an upgrade):
                # its next attempt is generated straight away, as it was then.
                emit(session, feature.execution_id, AttemptRequested(attempt=feature.attempts + 1))
        step.relay.wake()
        return feature if status in _CHECKOUT_FROM else None

    async def _base_commit(self, request: FeatureRequest) -> str:
        """The commit the request's branch points at now."""
        log.info("worker.checkout", execution_id=request.execution_id)
        with STAGE_DURATION.labels("checkout").time(), _sorted("checkout"):
            mirror = await self._git.mirror(request.repository_url)
            return await self._git.resolve_branch(mirror, request.branch)

    async def start_or_stop(self, step: Step[EnvironmentCompleted]) -> None:
        """A base that cannot be tested fails the feature before any model call; otherwise attempt 1."""
        result = step.event.result

        def decide(session: AsyncSession, feature: Feature) -> None:
            feature.preparation = preparation_summary(result)
            if result.untestable:
                reason = untestable_reason(result)
                log.warning("worker.base_untestable", execution_id=feature.execution_id, reason=reason)
                move(session, feature, FeatureStatus.failed, reason=reason)
            else:
                move(session, feature, FeatureStatus.generating, detail={"attempt": 1})
                emit(session, feature.execution_id, AttemptRequested(attempt=1))

        await step.commit(at(FeatureStatus.preparing), decide)

    # -- generate: worktree + agent + diff -------------------------------------------------------------

    async def generate(self, step: Step[AttemptRequested]) -> None:
        attempt = step.event.attempt
        current = at(FeatureStatus.generating, attempt=attempt - 1)
        loaded = await step.read(current, self._load_attempt)
        if loaded is None:
            return  # a redelivery of a step already done, or the feature ended meanwhile
        request, base_commit = loaded.request, loaded.base_commit
        log.info("worker.generate", execution_id=step.execution_id, attempt=attempt)
        workspace = await self._prepare_workspace(request, base_commit, loaded.previous)
        worktree = workspace.worktree
        transcript: list[tuple[str, dict[str, Any]]] = []
        keep_transcript = self._transcript_keeper(attempt, transcript)
        try:
            result = await self._run_agent(step.event, loaded, workspace, transcript)
        except (AgentError, ProviderError) as error:
            await self._give_up(step, str(error), keep_transcript)
            return
        diff = await self._git.diff(worktree, base_commit)
        if refusal := await refuse_unsafe(self._git, worktree, base_commit, diff):
            await self._give_up(step, refusal, keep_transcript)
            return

        def record(session: AsyncSession, feature: Feature) -> None:
            session.add(
                Patch(execution_id=feature.execution_id, attempt=attempt, diff=diff, summary=result.summary)
            )
            keep_transcript(session, feature)
            feature.attempts = attempt
            detail = {"attempt": attempt, "summary": result.summary, "diff_bytes": len(diff)}
            move(session, feature, FeatureStatus.testing, detail=detail)
            emit(session, feature.execution_id, TestsRequested(attempt=attempt))

        await step.commit(current, record)

    async def _load_attempt(self, session: AsyncSession, feature: Feature) -> _Attempt:
        assert feature.base_commit is not None  # set by the checkout, before preparing
        budget = Budget(
            max_tokens=self._settings.max_tokens_per_feature,
            max_cost_usd=self._settings.max_cost_usd_per_feature,
            spent_tokens=feature.input_tokens + feature.output_tokens,
            spent_cost_usd=feature.cost_usd,
            context_tokens=self._settings.llm_context_tokens,
        )
        previous = await patch_for(session, feature.execution_id, feature.attempts)
        return _Attempt(request_of(feature), feature.base_commit, budget, previous, feature.agent_turns)

    async def _prepare_workspace(
        self, request: FeatureRequest, base_commit: str, previous: Patch | None
    ) -> _Workspace:
        """A fresh worktree of the base commit, its map and instructions; then the last attempt's patch."""
        with STAGE_DURATION.labels("checkout").time(), _sorted("checkout"):
            mirror = await self._git.mirror(request.repository_url, commit=base_commit)
            worktree = await self._git.worktree(
                mirror, self._worktree_path(request.execution_id), base_commit
            )
        # Read from the base commit, before the previous attempt's patch is applied: the same text on every
        # attempt, so the cached prompt prefix survives retries (and a patch cannot rewrite its own rules).
        targets = request.specification.target_files
        repo_map = await asyncio.to_thread(build_repo_map, worktree, targets, self._settings.repo_map_tokens)
        instructions = await asyncio.to_thread(
            read_instructions, worktree, targets, self._settings.repo_instructions_tokens * _CHARS_PER_TOKEN
        )
        if previous is not None:
            await self._git.apply(worktree, previous.diff)
        return _Workspace(worktree, repo_map, instructions, await self._pull_requests.conversation(request))

    async def _run_agent(
        self,
        event: AttemptRequested,
        attempt: _Attempt,
        workspace: _Workspace,
        transcript: list[tuple[str, dict[str, Any]]],
    ) -> AgentResult:
        request, worktree = attempt.request, workspace.worktree
        provider = self._provider(request.execution_id, attempt.start_turn)
        with STAGE_DURATION.labels("agent").time(), _mcp_failures():
            async with connected(self._mcp_servers) as mcp:
                toolbox = Toolbox(
                    worktree,
                    lambda: self._run_tests_now(request, attempt.base_commit, worktree),
                    run_command=lambda command, timeout: self._run_command_now(
                        request, attempt.base_commit, worktree, command, timeout
                    ),
                    extra=mcp,
                )
                return await run_agent(
                    provider,
                    toolbox,
                    task_message(request.specification, event.feedback, conversation=workspace.conversation),
                    max_turns=self._settings.max_agent_turns,
                    record=_recorder(transcript, provider.name),
                    repo_map=workspace.repo_map,
                    instructions=workspace.instructions,
                    budget=attempt.budget,
                )

    def _transcript_keeper(
        self, attempt: int, transcript: list[tuple[str, dict[str, Any]]]
    ) -> Callable[[AsyncSession, Feature], None]:
        def keep(session: AsyncSession, feature: Feature) -> None:
            self._store_transcript(session, feature, attempt, transcript)

        return keep

    async def _give_up(
        self, step: Step[Any], reason: str, effect: Callable[[AsyncSession, Feature], None] | None = None
    ) -> None:
        await step.fail(reason, effect=effect)
        shutil.rmtree(self._worktree_path(step.execution_id), ignore_errors=True)

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
        spec = RunSpec.of(request, base_commit, await self._git.diff(worktree, base_commit))
        reply = await self._bus.request(
            Subjects.EXECUTOR_RUN,
            spec.model_dump_json().encode(),
            timeout=self._settings.tool_timeout_seconds,
        )
        return TestResult.model_validate_json(reply)

    async def _run_command_now(
        self, request: FeatureRequest, base_commit: str, worktree: Path, command: str, timeout: int
    ) -> str:
        """The agent's run_command tool: the executor runs it on a copy of the current tree; the files it
        changed there come back to the worktree, through the same checks as the agent's own edits."""
        before = await self._git.diff(worktree, base_commit)
        spec = CommandSpec(
            run=RunSpec.of(request, base_commit, before), command=command, timeout_seconds=timeout
        )
        reply = await self._bus.request(
            Subjects.EXECUTOR_COMMAND,
            spec.model_dump_json().encode(),
            timeout=self._settings.tool_timeout_seconds,
        )
        result = CommandResult.model_validate_json(reply)
        if result.error is not None:
            raise ToolError(result.error)
        changes = await self._adopt(worktree, base_commit, before, result.diff or before)
        told = describe_command(result.exit_code, result.timed_out, timeout, result.output, changes)
        if result.timed_out:
            raise ToolError(told)  # an error result: the model should not read on as if it had finished
        return told

    async def _adopt(self, worktree: Path, base_commit: str, before: str, after: str) -> str:
        """Make the worktree hold `after` (the whole change from the base) if it is safe; what changed."""
        changed = changed_paths(before, after)
        if not changed:
            return "no file in the repository changed"
        if refusal := await refuse_unsafe(self._git, worktree, base_commit, after):
            return f"its changes were discarded: {refusal}"
        await self._git.reset(worktree, base_commit)
        await self._git.apply(worktree, after)
        shown = ", ".join(changed[:20]) + (f" and {len(changed) - 20} more" if len(changed) > 20 else "")
        return f"changed: {shown}"

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

    async def judge_tests(self, step: Step[TestsCompleted]) -> None:
        attempt, result = step.event.attempt, step.event.result

        def decide(session: AsyncSession, feature: Feature) -> None:
            feature.test_summary = result.summary()
            if result.succeeded:
                move(session, feature, FeatureStatus.reviewing, detail={"attempt": attempt})
                emit(session, feature.execution_id, ReviewRequested(attempt=attempt))
            elif attempt < self._settings.max_attempts:
                reason = f"tests failed on attempt {attempt}"
                move(
                    session, feature, FeatureStatus.generating, reason=reason, detail={"attempt": attempt + 1}
                )
                retry = AttemptRequested(attempt=attempt + 1, feedback=describe_tests(result))
                emit(session, feature.execution_id, retry)
            else:
                move(session, feature, FeatureStatus.failed, reason=never_passed_reason(result, attempt))

        await step.commit(at(FeatureStatus.testing, attempt=attempt), decide)

    # -- delivery --------------------------------------------------------------------------------------

    async def deliver(self, step: Step[DeliveryRequested]) -> None:
        """Commit and push the patch to `feature/<id>`; in pull-request delivery, open (or update) the
        branch's pull request too. A feature the reviewer held for a person gets its pull request as a
        draft meanwhile and stays `awaiting_approval`; in branch delivery nothing is pushed until then."""
        held = step.event.draft
        current = at(FeatureStatus.awaiting_approval if held else FeatureStatus.delivering)
        delivery = await step.read(current, self._load_delivery)
        if delivery is None or (held and not delivery.drafts):
            return
        with STAGE_DURATION.labels("delivery").time():
            commit = await self._push(delivery)
            pull_request = await self._publish(delivery, commit, held=held)

        def record(session: AsyncSession, feature: Feature) -> None:
            detail: dict[str, Any] = {"branch": delivery.branch, "commit": commit}
            if pull_request is not None:
                feature.pull_request_url, feature.pull_request_number = pull_request.url, pull_request.number
                detail["pull_request"] = pull_request.url
            if held:
                status = FeatureStatus.awaiting_approval
                append_event(session, feature.execution_id, "pull_request.drafted", status, detail)
                return
            feature.delivered_branch, feature.delivered_commit = delivery.branch, commit
            move(session, feature, FeatureStatus.delivered, detail=detail)

        if not await step.commit(current, record) and held and pull_request is not None:
            await self._close_if_ended(step.execution_id, delivery.request)
        log.info("worker.delivered", execution_id=step.execution_id, commit=commit, held=held)

    async def _publish(self, delivery: Delivery, commit: str, *, held: bool) -> PullRequest | None:
        """Pull-request delivery: a follow-up answers its review thread; anything else opens or updates
        the branch's pull request."""
        if delivery.mode is not DeliveryMode.pull_request:
            return None
        if delivery.request.follow_up is not None:
            return await self._pull_requests.reply(delivery, commit)
        facts = delivery.facts(held=held, public_url=self._settings.public_url)
        return await self._pull_requests.publish(delivery, facts)

    async def _load_delivery(self, session: AsyncSession, feature: Feature) -> Delivery:
        return await load_delivery(session, feature, self._settings)

    async def _push(self, delivery: Delivery) -> str:
        """The patch committed on the base commit and pushed to the feature's branch; the commit's id."""
        path = self._worktree_path(delivery.request.execution_id)
        with _sorted("delivery"):
            mirror = await self._git.mirror(delivery.request.repository_url, commit=delivery.base_commit)
            worktree = await self._git.worktree(mirror, path, delivery.base_commit)
            if refusal := await refuse_unsafe(self._git, worktree, delivery.base_commit, delivery.patch.diff):
                raise PermanentError(refusal)
            await self._git.apply(worktree, delivery.patch.diff)
            message = commit_message(
                delivery.request, delivery.patch.summary, delivery.review, models=delivery.models
            )
            commit = await self._git.commit(
                worktree,
                message,
                Author(self._settings.git_author_name, self._settings.git_author_email),
                delivery.created_at.isoformat(),
                committer=self._committer(),
                signing_key=self._settings.git_signing_key,
            )
            await self._git.push(worktree, delivery.request.repository_url, commit, delivery.branch)
        await self._git.remove_worktree(mirror, path)
        return commit

    def _committer(self) -> Author | None:
        name, email = self._settings.git_committer_name, self._settings.git_committer_email
        if name is None and email is None:
            return None
        return Author(name or self._settings.git_author_name, email or self._settings.git_author_email)

    async def _close_if_ended(self, execution_id: str, request: FeatureRequest) -> None:
        """A draft opened while the feature was being cancelled or rejected: close it again."""
        async with self._database.transaction() as session:
            feature = await find_feature(session, execution_id)
            ended = feature is not None and feature.status in _CLOSING
            reason = (feature.failure_reason or feature.status) if feature is not None else ""
        if ended:
            await self._pull_requests.close(request, reason or "the feature ended")

    async def close(self, step: Step[ClosureRequested]) -> None:
        """Close the pull request of a feature that ended undelivered (pull-request delivery only)."""

        def ended(feature: Feature) -> bool:
            return feature.status in _CLOSING

        async def gather(_: AsyncSession, feature: Feature) -> tuple[FeatureRequest, FeatureStatus]:
            return request_of(feature), FeatureStatus(feature.status)

        loaded = await step.read(ended, gather)
        if loaded is None or mode_of(loaded[0], self._settings) is not DeliveryMode.pull_request:
            return
        request, status = loaded
        closed = await self._pull_requests.close(request, step.event.reason)

        def record(session: AsyncSession, feature: Feature) -> None:
            if closed is not None:
                detail = {"pull_request": closed.url, "reason": step.event.reason}
                append_event(session, feature.execution_id, "pull_request.closed", status, detail)

        await step.commit(ended, record)

    # -- shared ----------------------------------------------------------------------------------------

    def _worktree_path(self, execution_id: str) -> Path:
        return self._git.root / "features" / execution_id


@dataclass(frozen=True)
class _Attempt:
    """What an attempt needs: the request, the base commit, the budget left, the previous attempt's patch,
    and the agent turns used so far (a scripted model resumes there)."""

    request: FeatureRequest
    base_commit: str
    budget: Budget
    previous: Patch | None
    start_turn: int


@dataclass(frozen=True)
class _Workspace:
    """The attempt's worktree, and what the model is told about the base commit's repository (and, for a
    follow-up, the review thread it answers)."""

    worktree: Path
    repo_map: str
    instructions: Instructions
    conversation: str = ""


@contextlib.contextmanager
def _mcp_failures() -> Iterator[None]:
    """An MCP server that cannot be started or listed is the operator's to fix: the step is retried (it
    may be starting up), and the reason says which setting."""
    try:
        yield
    except OSError as error:
        raise TransientError(f"an MCP tool server (SF_MCP_SERVERS_JSON) could not start: {error}") from error


@contextlib.contextmanager
def _sorted(what: str) -> Iterator[None]:
    """Sort git's failures for the step skeleton: a timeout or a network failure is retried; anything else
    (no such branch, a refused URL or patch) fails the feature, saying which step failed."""
    try:
        yield
    except GitError as error:
        if error.transient:
            raise TransientError(f"{what} failed: {error}") from error
        raise PermanentError(f"{what} failed: {error}") from error
    except RepositoryRefused as error:
        raise PermanentError(f"{what} failed: {error}") from error


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


def commit_message(
    request: FeatureRequest, summary: str, review: dict[str, Any] | None, *, models: tuple[str, ...] = ()
) -> str:
    """The delivered commit's message: the request, the agent's summary, and the review that let it
    through (decision, score, reasons, findings), so the branch explains itself without the platform;
    trailers name the execution, the models that wrote it and the platform's version."""
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
    lines += [f"Model: {model}" for model in models]
    lines += [f"Generated-By: service-feature {__version__}"]
    return "\n".join(lines) + "\n"
