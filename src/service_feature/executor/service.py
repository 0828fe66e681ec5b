"""The executor service: runs the tests a worker asks for, durably (the gate before review) or
interactively (the agent's `run_tests` tool)."""

from __future__ import annotations

import structlog
from fastapi import APIRouter

from service_feature.bus.base import Bus, Delivery
from service_feature.events import Envelope, EventType, Subjects
from service_feature.executor.runner import ExecutionCancelled, RunSpec, TestRunner
from service_feature.killswitch import KillSwitch
from service_feature.lifecycle import FeatureStatus
from service_feature.metrics import STAGE_DURATION
from service_feature.models import FeatureRequest, TestResult
from service_feature.store.database import Database
from service_feature.store.features import (
    add_outbox,
    append_event,
    claim_message,
    execution_for,
    find_feature,
    patch_for,
)
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Execution

log = structlog.get_logger(__name__)

CONSUMER = "executor-tests"


class ExecutorService:
    name = "executor"

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

    async def stop(self) -> None:
        """Nothing of its own to release: the bus hands back in-flight runs."""

    async def start(self) -> None:
        self._switch.on_engage(self.runner.cancel)
        await self._bus.consume(
            Subjects.TESTS_REQUESTED,
            CONSUMER,
            self.handle_tests_requested,
            concurrency=self._concurrency,
            gate=self._switch.wait_released,
        )
        await self._bus.serve(Subjects.EXECUTOR_RUN, "executor", self.handle_interactive_run)
        await self._bus.listen(f"{Subjects.STATUS_PREFIX}.*", self._stop_cancelled_features)

    async def _stop_cancelled_features(self, data: bytes) -> None:
        """A feature cancelled through the API stops its running execution at once."""
        event = Envelope.model_validate_json(data)
        if event.payload.get("status") == FeatureStatus.cancelled:
            self.runner.cancel(event.execution_id)

    async def _run_until_done(self, spec: RunSpec) -> TestResult | None:
        """Run the tests; a run stopped by the kill switch is rerun after release. None: feature cancelled."""
        while True:
            await self._switch.wait_released()
            try:
                return await self.runner.run(spec)
            except ExecutionCancelled:
                if not self._switch.engaged:
                    return None

    def router(self) -> APIRouter:
        router = APIRouter(tags=["executor"])

        @router.get("/api/v1/executions/active")
        async def active_executions() -> dict[str, object]:
            runs = [run.describe() for run in self.runner.active.values()]
            return {"executions": runs, "count": len(runs)}

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
            request = FeatureRequest.model_validate(feature.request)
            assert patch is not None and feature.base_commit is not None
            spec = RunSpec(
                execution_id=execution_id,
                repository_url=feature.repository_url,
                base_commit=feature.base_commit,
                diff=patch.diff,
                language=request.specification.language,
                test_command=request.test_command,
            )
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
            add_outbox(
                session,
                Subjects.TESTS_COMPLETED,
                Envelope(
                    type=EventType.TESTS_COMPLETED,
                    execution_id=execution_id,
                    payload={"attempt": attempt, "result": result.model_dump(mode="json")},
                ),
            )
        self._relay.wake()
