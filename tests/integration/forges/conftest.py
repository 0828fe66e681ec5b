"""A forge server per test (parametrised over GitHub, GitLab and Gitea) and the adapter built for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service_feature.forges.base import Forge, ForgeKind
from service_feature.forges.registry import RetryPolicy, open_forge
from tests.support.forges import SERVERS, ForgeServer

REPOSITORIES = {
    ForgeKind.github: "acme/app",
    ForgeKind.gitlab: "acme/platform/app",  # GitLab projects may sit in subgroups
    ForgeKind.gitea: "acme/app",
}
POLICY = RetryPolicy(max_attempts=3, initial_wait=0.5, max_wait=60.0)


class RecordedSleeps:
    """Stands in for asyncio.sleep: notes the waits, waits for none of them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture(params=list(ForgeKind), ids=str)
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ForgeServer]:
    async with SERVERS[request.param]() as started:
        started.add_repository(REPOSITORIES[started.kind])
        yield started


@pytest.fixture
def repository(server: ForgeServer) -> str:
    return REPOSITORIES[server.kind]


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
async def forge(server: ForgeServer, sleeps: RecordedSleeps) -> AsyncIterator[Forge]:
    adapter = open_forge(server.account(), policy=POLICY, sleep=sleeps, timeout=10.0)
    yield adapter
    await adapter.aclose()
