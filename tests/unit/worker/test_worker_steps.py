"""The worker's step handlers over an in-memory bus and a real SQLite store and git: what each outcome
does to the feature and which event comes next; a bad message is dead-lettered, a git failure that may pass
is retried, one that cannot fails the feature saying why."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service_feature.config import WorkerSettings
from service_feature.demo import create_origin
from service_feature.events import (
    AttemptRequested,
    Envelope,
    EnvironmentRequested,
    FeatureRequested,
    ReviewRequested,
    Subjects,
    TestsCompleted,
    TestsRequested,
)
from service_feature.git import Git
from service_feature.lifecycle import FeatureStatus
from service_feature.models import FeatureRequest, TestCase, TestOutcome, TestResult
from service_feature.store import Database, upgrade
from service_feature.store.features import create_feature, find_feature, move
from service_feature.store.outbox import OutboxRelay
from service_feature.store.tables import Feature
from service_feature.worker.service import WorkerService
from tests.support.bus import InMemoryBus
from tests.support.platform import EXAMPLES
from tests.support.remotes import stall_first_fetch

FAILING = TestResult(
    command="python -m pytest",
    sandbox="bwrap",
    exit_code=1,
    passed=1,
    failed=1,
    failures=[
        TestCase(name="tests/test_greeting.py::test_greet", outcome=TestOutcome.failed, message="nope")
    ],
)
PASSING = TestResult(command="python -m pytest", sandbox="bwrap", exit_code=0, passed=2)


class _Switch:
    async def wait_released(self) -> None:
        """Never engaged here."""


@dataclass
class Harness:
    database: Database
    bus: InMemoryBus
    relay: OutboxRelay
    origin: Path
    git_home: Path

    async def submit(self, branch: str = "main", execution_id: str = "steps1") -> FeatureRequest:
        request = FeatureRequest.model_validate(
            {
                "execution_id": execution_id,
                "repository_url": f"file://{self.origin}",
                "branch": branch,
                "specification": {"title": "T", "language": "python"},
            }
        )
        async with self.database.transaction() as session:
            await create_feature(session, request)
        await self.relay.flush()
        return request

    async def put_in(self, status: FeatureStatus, attempts: int, execution_id: str = "steps1") -> None:
        """Walk a submitted feature to `status` with `attempts` attempts recorded."""
        path = {
            FeatureStatus.testing: [
                FeatureStatus.checking_out,
                FeatureStatus.preparing,
                FeatureStatus.generating,
                FeatureStatus.testing,
            ]
        }[status]
        async with self.database.transaction() as session:
            feature = await find_feature(session, execution_id)
            assert feature is not None
            for step in path:
                move(session, feature, step)
            feature.attempts = attempts
        await self.relay.flush()
        self.bus.published.clear()

    async def feature(self, execution_id: str = "steps1") -> Feature:
        async with self.database.transaction() as session:
            feature = await find_feature(session, execution_id)
        assert feature is not None
        return feature

    async def deliver(self, envelope: Envelope) -> str:
        outcome = await self.bus.deliver(envelope.payload.subject, envelope)
        await self.relay.flush()
        return outcome


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    await upgrade(database.engine)
    bus = InMemoryBus()
    relay = OutboxRelay(database, bus)
    git_home = tmp_path / "git"
    git = Git(git_home, timeout=5.0, allow_local=True)
    settings = WorkerSettings(MAX_ATTEMPTS=2)  # type: ignore[call-arg]
    worker = WorkerService(settings, database, bus, relay, git, _Switch())  # type: ignore[arg-type]
    await worker.start()
    origin = create_origin(EXAMPLES / "demo-repo", tmp_path / "origin")
    yield Harness(database, bus, relay, origin, git_home)
    await database.close()


async def test_a_checkout_asks_the_executor_to_prepare_the_base_commit(harness: Harness) -> None:
    await harness.submit()
    (request,) = harness.bus.taken(Subjects.FEATURE_REQUESTS)
    assert await harness.deliver(request) == "acked"

    feature = await harness.feature()
    assert feature.status == FeatureStatus.preparing
    (prepare,) = harness.bus.taken(Subjects.ENVIRONMENT_REQUESTED)
    assert prepare.payload == EnvironmentRequested(base_commit=feature.base_commit or "")


async def test_a_branch_that_does_not_exist_fails_the_feature_saying_so(harness: Harness) -> None:
    await harness.submit(branch="nope")
    (request,) = harness.bus.taken(Subjects.FEATURE_REQUESTS)
    assert await harness.deliver(request) == "acked"

    feature = await harness.feature()
    assert feature.status == FeatureStatus.failed
    assert feature.failure_reason is not None
    assert feature.failure_reason.startswith("checkout failed: branch 'nope' does not exist")
    assert "main" in feature.failure_reason  # the branches it has
    assert harness.bus.taken(Subjects.ENVIRONMENT_REQUESTED) == []


async def test_a_remote_that_stalls_is_retried_not_failed(harness: Harness) -> None:
    stalled = stall_first_fetch(harness.git_home)
    await harness.submit()
    (request,) = harness.bus.taken(Subjects.FEATURE_REQUESTS)

    assert await harness.deliver(request) == "retried"
    assert stalled.exists()
    feature = await harness.feature()
    assert (feature.status, feature.failure_reason) == (FeatureStatus.checking_out, None)

    assert await harness.deliver(request) == "acked"  # the redelivery, once the remote answers
    assert (await harness.feature()).status == FeatureStatus.preparing


async def test_failed_tests_with_attempts_left_ask_for_another_attempt_with_the_failures(
    harness: Harness,
) -> None:
    await harness.submit()
    await harness.put_in(FeatureStatus.testing, attempts=1)
    completed = Envelope.of("steps1", TestsCompleted(attempt=1, result=FAILING))
    assert await harness.deliver(completed) == "acked"
    assert await harness.deliver(completed) == "acked"  # a redelivery changes nothing

    assert (await harness.feature()).status == FeatureStatus.generating
    (retry,) = harness.bus.taken(Subjects.ATTEMPT_REQUESTED)
    assert isinstance(retry.payload, AttemptRequested)
    assert retry.payload.attempt == 2
    assert "tests/test_greeting.py::test_greet" in (retry.payload.feedback or "")


async def test_the_last_attempt_failing_its_tests_fails_the_feature(harness: Harness) -> None:
    await harness.submit()
    await harness.put_in(FeatureStatus.testing, attempts=2)
    assert await harness.deliver(Envelope.of("steps1", TestsCompleted(attempt=2, result=FAILING))) == "acked"

    feature = await harness.feature()
    assert feature.status == FeatureStatus.failed
    assert "test_greet" in (feature.failure_reason or "")
    assert harness.bus.taken(Subjects.ATTEMPT_REQUESTED) == []


async def test_passing_tests_go_to_review_and_a_stale_result_is_ignored(harness: Harness) -> None:
    await harness.submit()
    await harness.put_in(FeatureStatus.testing, attempts=1)
    assert await harness.deliver(Envelope.of("steps1", TestsCompleted(attempt=3, result=FAILING))) == "acked"
    assert (await harness.feature()).status == FeatureStatus.testing  # not this attempt's result

    assert await harness.deliver(Envelope.of("steps1", TestsCompleted(attempt=1, result=PASSING))) == "acked"
    assert (await harness.feature()).status == FeatureStatus.reviewing
    assert [e.payload for e in harness.bus.taken(Subjects.REVIEW_REQUESTED)] == [ReviewRequested(attempt=1)]


async def test_an_event_on_the_wrong_subject_is_dead_lettered_with_the_reason(harness: Harness) -> None:
    request = await harness.submit()
    wrong = Envelope.of(request.execution_id, TestsRequested(attempt=1))
    assert await harness.bus.deliver(Subjects.FEATURE_REQUESTS, wrong) == "dead-lettered"
    (_, reason), *_ = harness.bus.dead_letters
    assert reason == "worker-requests handles FeatureRequested, not tests.requested"


async def test_a_bare_request_on_the_bus_creates_the_feature(harness: Harness) -> None:
    request = FeatureRequest.model_validate(
        {
            "execution_id": "bare1",
            "repository_url": f"file://{harness.origin}",
            "specification": {"title": "T", "language": "python"},
        }
    )
    assert await harness.deliver(Envelope.of("bare1", FeatureRequested(request=request))) == "acked"
    assert (await harness.feature("bare1")).status == FeatureStatus.preparing


async def test_a_commands_changes_are_adopted_only_through_the_patch_checks(tmp_path: Path) -> None:
    """What run_command changed comes back to the agent's worktree as a whole diff from the base; a diff
    the patch checks refuse (here a new symbolic link) leaves the worktree as it was."""
    origin = create_origin(EXAMPLES / "demo-repo", tmp_path / "origin")
    git = Git(tmp_path / "git", timeout=30, allow_local=True)
    mirror = await git.mirror(str(origin))
    base = await git.resolve_branch(mirror, "main")
    worktree = await git.worktree(mirror, tmp_path / "wt", base)
    (worktree / "mine.txt").write_text("the agent's\n")
    before = await git.diff(worktree, base)

    scratch = await git.worktree(mirror, tmp_path / "scratch", base)
    await git.apply(scratch, before)
    (scratch / "made-by-command.txt").write_text("from the command\n")
    adopted = await git.diff(scratch, base)
    (scratch / "escape").symlink_to("/etc")
    refused = await git.diff(scratch, base)

    worker = WorkerService(WorkerSettings(), None, None, None, git, _Switch())  # type: ignore[arg-type]
    assert (await worker._adopt(worktree, base, before, refused)).startswith("its changes were discarded: ")
    assert not (worktree / "made-by-command.txt").exists()
    assert (await worker._adopt(worktree, base, before, adopted)) == "changed: made-by-command.txt"
    assert (worktree / "made-by-command.txt").read_text() == "from the command\n"
    assert (worktree / "mine.txt").read_text() == "the agent's\n"
