"""The executor service: prepares a feature's base commit (setup and baseline, before any model call), runs
the tests a worker asks for, durably (the gate before review) or interactively (the agent's `run_tests`
tool)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter

from service_feature.bus.base import Bus, Delivery
from service_feature.events import Envelope, EventType, Subjects
from service_feature.executor.runner import ExecutionCancelled, RunSpec, TestRunner
from service_feature.executor.toolchains import unavailable_languages
from service_feature.killswitch import KillSwitch
from service_feature.lifecycle import FeatureStatus
from service_feature.metrics import STAGE_DURATION
from service_feature.models import FeatureRequest, Language, TestResult
from service_feature.store.database import Database
from service_feature.store.features import (
    append_event,
    claim_message,
    emit,
    execution_for,
    find_feature,
    patch_for,
    was_processed,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Execution, Feature

log = structlog.get_logger(__name__)

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
        self._database = database
        self._bus = bus
        self._relay = relay
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
        consumers = (
            (Subjects.ENVIRONMENT_REQUESTED, ENVIRONMENT_CONSUMER, self.handle_environment_requested),
            (Subjects.TESTS_REQUESTED, CONSUMER, self.handle_tests_requested),
        )
        for subject, durable, handler in consumers:
            await self._bus.consume(
                subject, durable, handler, concurrency=self._concurrency, gate=self._switch.wait_released
            )
        await self._bus.serve(Subjects.EXECUTOR_RUN, "executor", self.handle_interactive_run)
        await self._bus.listen(f"{Subjects.STATUS_PREFIX}.*", self._stop_cancelled_features)

    async def _stop_cancelled_features(self, data: bytes) -> None:
        """A feature cancelled through the API stops its running execution at once."""
        event = Envelope.model_validate_json(data)
        if event.payload.get("status") == FeatureStatus.cancelled:
            self.runner.cancel(event.execution_id)

    async def _run_until_done(
        self, spec: RunSpec, run: Callable[[RunSpec], Awaitable[TestResult]] | None = None
    ) -> TestResult | None:
        """Run the tests (or `run`, e.g. the preparation); a run stopped by the kill switch is rerun after
        release. None: the feature was cancelled."""
        run = run or self.runner.run
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

    async def handle_interactive_run(self, data: bytes) -> bytes:
        spec = RunSpec.model_validate_json(data)
        try:
            result = await self._run_until_done(spec)
            if result is None:
                raise ExecutionCancelled("the feature was cancelled")
        except Exception as error:
            result = TestResult(
                command="", sandbox="", exit_code=None, errored=1, output_tail=f"test run failed: {error}"
            )
        return result.model_dump_json().encode()

    async def handle_environment_requested(self, delivery: Delivery) -> None:
        """Setup and baseline on the base commit (cached for the test runs that follow); the worker decides
        from the result whether the agent is called at all."""
        envelope = delivery.envelope
        execution_id = envelope.execution_id
        async with self._database.transaction() as session:
            feature = await find_feature(session, execution_id)
            if feature is None or feature.status != FeatureStatus.preparing:
                return  # stale or duplicate: the feature has moved on
            if await was_processed(session, ENVIRONMENT_CONSUMER, envelope.event_id):
                return
            spec = run_spec(feature, diff="")  # the base commit alone
        with STAGE_DURATION.labels("preparation").time():
            result = await self._run_until_done(spec, self.runner.prepare)
        if result is None:
            return  # the feature was cancelled while its base was prepared
        log.info("executor.environment_done", execution_id=execution_id, untestable=bool(result.untestable))
        async with self._database.transaction() as session:
            if not await claim_message(session, ENVIRONMENT_CONSUMER, envelope.event_id):
                return
            # The base's own counts: "succeeded" judges a patch, so it means nothing here.
            counts = {key: value for key, value in result.summary().items() if key != "succeeded"}
            detail = {**counts, "environment": result.environment, "untestable": result.untestable}
            append_event(session, execution_id, "environment.completed", FeatureStatus.preparing, detail)
            emit(
                session,
                Subjects.ENVIRONMENT_COMPLETED,
                EventType.ENVIRONMENT_COMPLETED,
                execution_id,
                {"result": result.model_dump(mode="json")},
            )
        self._relay.wake()

    async def handle_tests_requested(self, delivery: Delivery) -> None:
        execution_id = delivery.envelope.execution_id
        attempt = int(delivery.envelope.payload["attempt"])
        async with self._database.transaction() as session:
            feature = await find_feature(session, execution_id)
            if feature is None or feature.status != FeatureStatus.testing or feature.attempts != attempt:
                return  # stale or duplicate: the feature has moved on
            if await execution_for(session, execution_id, attempt) is not None:
                return
            patch = await patch_for(session, execution_id, attempt)
            assert patch is not None
            spec = run_spec(feature, patch.diff)
        with STAGE_DURATION.labels("tests").time():
            result = await self._run_until_done(spec)
        if result is None:
            return  # the feature was cancelled while its tests ran
        log.info("executor.tests_done", execution_id=execution_id, attempt=attempt, **result.summary())
        async with self._database.transaction() as session:
            if not await claim_message(session, CONSUMER, delivery.envelope.event_id):
                return
            session.add(
                Execution(execution_id=execution_id, attempt=attempt, result=result.model_dump(mode="json"))
            )
            append_event(
                session,
                execution_id,
                "tests.completed",
                FeatureStatus.testing,
                {"attempt": attempt, **result.summary()},
            )
            emit(
                session,
                Subjects.TESTS_COMPLETED,
                EventType.TESTS_COMPLETED,
                execution_id,
                {"attempt": attempt, "result": result.model_dump(mode="json")},
            )
        self._relay.wake()


def run_spec(feature: Feature, diff: str) -> RunSpec:
    """What a run of this feature's base commit plus `diff` needs, from its stored request."""
    request = FeatureRequest.model_validate(feature.request)
    assert feature.base_commit is not None  # set at checkout, before any run
    return RunSpec(
        execution_id=feature.execution_id,
        repository_url=feature.repository_url,
        base_commit=feature.base_commit,
        diff=diff,
        language=request.specification.language,
        test_command=request.test_command,
    )
