"""The executor service: prepares a feature's base commit (setup and baseline, before any model call), runs
the tests a worker asks for, durably (the gate before review) or interactively (the agent's `run_tests`
tool)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from service_feature.bus.base import Bus
from service_feature.events import (
    CommandResult,
    CommandSpec,
    Envelope,
    EnvironmentCompleted,
    EnvironmentRequested,
    RunSpec,
    StatusChanged,
    Subjects,
    TestsCompleted,
    TestsRequested,
)
from service_feature.executor.runner import ExecutionCancelled, TestRunner
from service_feature.executor.toolchains import unavailable_languages
from service_feature.killswitch import KillSwitch
from service_feature.lifecycle import FeatureStatus
from service_feature.metrics import STAGE_DURATION
from service_feature.models import Language, TestResult
from service_feature.store.database import Database
from service_feature.store.features import append_event, emit, patch_for
from service_feature.store.outbox import OutboxRelay
from service_feature.store.steps import Step, Steps, at, request_of
from service_feature.store.tables import Execution, Feature

log = structlog.get_logger(__name__)
S = TypeVar("S")
R = TypeVar("R")

CONSUMER = "executor-tests"
ENVIRONMENT_CONSUMER = "executor-environment"


class ExecutorService:
    name = "executor"

    unavailable: dict[Language, str]

    def __init__(
        self,
        database: Database,
        bus: Bus,
        relay: OutboxRelay,
        runner: TestRunner,
        switch: KillSwitch,
        concurrency: int,
    ) -> None:
        self._bus = bus
        self._steps = Steps(database, relay)
        self.runner = runner
        self._switch = switch
        self._concurrency = concurrency
        self.unavailable = {}

    async def stop(self) -> None:
        """Nothing of its own to release: the bus hands back in-flight runs."""

    async def start(self) -> None:
        self._switch.on_engage(self.runner.cancel)
        self.unavailable = await asyncio.to_thread(unavailable_languages)
        for language, reason in self.unavailable.items():
            # Not a readiness failure: the other languages still work, and a feature in this one is told
            # the same reason by its preparation step instead of running the agent.
            log.warning("executor.language_unavailable", language=language.value, reason=reason)
        await self._bus.consume(
            EnvironmentRequested.subject,
            ENVIRONMENT_CONSUMER,
            self._steps.handler(ENVIRONMENT_CONSUMER, EnvironmentRequested, self.prepare),
            concurrency=self._concurrency,
            gate=self._switch.wait_released,
        )
        await self._bus.consume(
            TestsRequested.subject,
            CONSUMER,
            self._steps.handler(CONSUMER, TestsRequested, self.test),
            concurrency=self._concurrency,
            gate=self._switch.wait_released,
        )
        await self._bus.serve(Subjects.EXECUTOR_RUN, "executor", self.run_interactively)
        await self._bus.serve(Subjects.EXECUTOR_COMMAND, "executor", self.run_command)
        await self._bus.listen(f"{Subjects.STATUS_PREFIX}.*", self._stop_cancelled_features)

    async def _stop_cancelled_features(self, data: bytes) -> None:
        """A feature cancelled through the API stops its running execution at once."""
        envelope = Envelope.model_validate_json(data)
        event = envelope.payload
        if isinstance(event, StatusChanged) and event.status == FeatureStatus.cancelled:
            self.runner.cancel(envelope.execution_id)

    async def _run_until_done(self, spec: S, run: Callable[[S], Awaitable[R]]) -> R | None:
        """`run` (the tests, the preparation, a command); a run stopped by the kill switch is rerun after
        release. None: the feature was cancelled."""
        while True:
            await self._switch.wait_released()
            try:
                return await run(spec)
            except ExecutionCancelled:
                if not self._switch.engaged:
                    return None

    def router(self) -> APIRouter:
        router = APIRouter(tags=["executor"])

        @router.get("/api/v1/executions/active")
        async def active_executions() -> dict[str, object]:
            runs = [run.describe() for run in self.runner.active.values()]
            unavailable = {language.value: reason for language, reason in self.unavailable.items()}
            return {"executions": runs, "count": len(runs), "unavailable_languages": unavailable}

        return router

    async def run_interactively(self, data: bytes) -> bytes:
        """The agent's `run_tests` tool. It always gets an answer: a run that could not happen is an errored
        result saying why, at once, never a silence the agent would wait out until its tool timeout."""
        try:
            spec = RunSpec.model_validate_json(data)
            result = await self._run_until_done(spec, self.runner.run)
            if result is None:
                raise ExecutionCancelled("the feature was cancelled")
        except Exception as error:
            log.exception("executor.interactive_run_failed", error=repr(error))
            result = TestResult(
                command="", sandbox="", exit_code=None, errored=1, output_tail=f"test run failed: {error}"
            )
        return result.model_dump_json().encode()

    async def run_command(self, data: bytes) -> bytes:
        """The agent's `run_command` tool; like `run_interactively`, it always answers, at once on error."""
        try:
            spec = CommandSpec.model_validate_json(data)
            result = await self._run_until_done(spec, self.runner.run_command)
            if result is None:
                result = CommandResult(error="the feature was cancelled")
        except Exception as error:
            log.exception("executor.command_failed", error=repr(error))
            result = CommandResult(error=f"the command could not run: {error}")
        return result.model_dump_json().encode()

    async def prepare(self, step: Step[EnvironmentRequested]) -> None:
        """Setup and baseline on the base commit (cached for the test runs that follow); the worker decides
        from the result whether the agent is called at all."""
        current = at(FeatureStatus.preparing)
        feature = await step.feature(current)
        if feature is None:
            return  # stale or duplicate: the feature has moved on
        with STAGE_DURATION.labels("preparation").time():
            result = await self._run_until_done(run_spec(feature, diff=""), self.runner.prepare)
        if result is None:
            return  # the feature was cancelled while its base was prepared
        log.info(
            "executor.environment_done", execution_id=step.execution_id, untestable=bool(result.untestable)
        )

        def record(session: AsyncSession, feature: Feature) -> None:
            # The base's own counts: "succeeded" judges a patch, so it means nothing here.
            counts = {key: value for key, value in result.summary().items() if key != "succeeded"}
            detail = {**counts, "environment": result.environment, "untestable": result.untestable}
            append_event(
                session, feature.execution_id, "environment.completed", FeatureStatus.preparing, detail
            )
            emit(session, feature.execution_id, EnvironmentCompleted(result=result))

        await step.commit(current, record)

    async def test(self, step: Step[TestsRequested]) -> None:
        attempt = step.event.attempt
        current = at(FeatureStatus.testing, attempt=attempt)
        spec = await step.read(current, _patched_spec)
        if spec is None:
            return  # stale or duplicate: the feature has moved on
        with STAGE_DURATION.labels("tests").time():
            result = await self._run_until_done(spec, self.runner.run)
        if result is None:
            return  # the feature was cancelled while its tests ran
        log.info("executor.tests_done", execution_id=step.execution_id, attempt=attempt, **result.summary())

        def record(session: AsyncSession, feature: Feature) -> None:
            execution_id = feature.execution_id
            session.add(
                Execution(execution_id=execution_id, attempt=attempt, result=result.model_dump(mode="json"))
            )
            detail = {"attempt": attempt, **result.summary()}
            append_event(session, execution_id, "tests.completed", FeatureStatus.testing, detail)
            emit(session, execution_id, TestsCompleted(attempt=attempt, result=result))

        await step.commit(current, record)


async def _patched_spec(session: AsyncSession, feature: Feature) -> RunSpec:
    patch = await patch_for(session, feature.execution_id, feature.attempts)
    assert patch is not None  # stored with the move to `testing`
    return run_spec(feature, patch.diff)


def run_spec(feature: Feature, diff: str) -> RunSpec:
    """What a run of this feature's base commit plus `diff` needs, from its stored request."""
    assert feature.base_commit is not None  # set at checkout, before any run
    return RunSpec.of(request_of(feature), feature.base_commit, diff)
