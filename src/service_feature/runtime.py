"""The composition root: builds the services a process runs, over one database, bus and outbox relay.

`service-feature up` runs all four here (the embedded default, with a private nats-server and SQLite
unless configured otherwise); `service-feature <service>` runs one. Either way the same service code,
bus semantics and store code run.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
import uvicorn
from fastapi import APIRouter, Depends

from service_feature.auth import Authenticator, Role, bootstrap_admin_key
from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.bus.nats import NatsBus
from service_feature.config import (
    CommonSettings,
    ExecutorSettings,
    GatewaySettings,
    ReviewerSettings,
    WorkerSettings,
)
from service_feature.events import Envelope
from service_feature.executor.runner import TestRunner
from service_feature.executor.sandbox.factory import create_sandbox, limits_from_settings
from service_feature.executor.service import ExecutorService
from service_feature.gateway.routes import feature_router
from service_feature.gateway.streams import close_streams
from service_feature.git import Git, PushCredentials
from service_feature.http import create_app
from service_feature.killswitch import KillSwitch
from service_feature.reviewer.service import ReviewerService
from service_feature.store.database import Database, upgrade
from service_feature.store.features import fail_feature
from service_feature.store.outbox import OutboxRelay
from service_feature.worker.service import WorkerService

_HTTP_SHUTDOWN_SECONDS = 5

log = structlog.get_logger(__name__)

SERVICES = ("gateway", "worker", "reviewer", "executor")


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the platform owns SIGTERM/SIGINT and shuts down in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _protected(router: APIRouter, auth: Authenticator, *roles: Role) -> APIRouter:
    """A service's own API routes behind an API key of one of `roles`."""
    wrapper = APIRouter(dependencies=[Depends(auth.require(*roles))])
    wrapper.include_router(router)
    return wrapper


@dataclass
class Platform:
    services: Sequence[str] = SERVICES
    port: int | None = None
    migrate: bool = True
    settings: CommonSettings = field(default_factory=CommonSettings)

    def __post_init__(self) -> None:
        self.nats: EmbeddedNatsServer | None = None
        self.database: Database | None = None
        self.bus: NatsBus | None = None
        self.relay: OutboxRelay | None = None
        self.http: _Server | None = None
        self.bound_port: int | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()
        self._services: list[Service] = []
        self.executor: ExecutorService | None = None
        self.switch: KillSwitch | None = None
        self.auth: Authenticator | None = None

    @property
    def name(self) -> str:
        return self.services[0] if len(self.services) == 1 else "gateway"

    async def start(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.nats_url
        if url is None:
            self.nats = EmbeddedNatsServer(settings.data_dir / "nats")
            await self.nats.start()
            url = self.nats.url
        self.database = database = Database(settings.sqlalchemy_url)
        if self.migrate:
            await upgrade(database.engine)
        self.bus = bus = await NatsBus.connect(
            url,
            name=f"service-feature-{self.name}",
            ack_wait_seconds=settings.ack_wait_seconds,
            max_deliver=settings.max_deliver,
            on_dead_letter=self._dead_lettered,
        )
        self.relay = relay = OutboxRelay(database, bus)
        relay.start()
        self.switch = switch = KillSwitch(database, bus)
        await switch.start()
        self.auth = auth = Authenticator(database)
        routers: list[APIRouter] = []
        started: list[Service] = []
        if "worker" in self.services:
            worker = WorkerSettings()
            git = self._git(worker, "worker", push=worker.push_credentials)
            started.append(WorkerService(worker, database, bus, relay, git, switch))
        if "reviewer" in self.services:
            reviewer_settings = ReviewerSettings()
            reviewer = ReviewerService(
                reviewer_settings, database, bus, relay, self._git(reviewer_settings, "reviewer"), switch
            )
            started.append(reviewer)
        if "executor" in self.services:
            executor = ExecutorSettings()
            runner = TestRunner(
                self._git(executor, "executor"),
                create_sandbox(executor),
                limits_from_settings(executor),
                executor.max_concurrent_executions,
                setup_sandbox=create_sandbox(executor, network=True),
                allow_dependency_changes=executor.allow_dependency_changes,
            )
            self.executor = ExecutorService(
                database, bus, relay, runner, switch, executor.max_concurrent_executions
            )
            started.append(self.executor)
            routers.append(_protected(self.executor.router(), auth, Role.reader))
        if "gateway" in self.services:
            routers.append(feature_router(GatewaySettings(), database, relay, bus=bus, switch=switch))
            admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
            await bootstrap_admin_key(
                database,
                settings.admin_key_file,
                generate=set(self.services) == set(SERVICES),
                wanted=admin_key,
            )
        self._services = started
        for service in started:
            await service.start()
        app = create_app(self.name, {"database": database.ready, "bus": bus.ready}, routers)
        host, port = settings.listen_host_port
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port if self.port is not None else port,
            log_config=None,
            access_log=False,
            lifespan="off",
            # A client holding a connection (a stream, a keep-alive) must not hold up the shutdown.
            timeout_graceful_shutdown=_HTTP_SHUTDOWN_SECONDS,
        )
        self.http = _Server(config)
        self._http_task = asyncio.create_task(self.http.serve())
        while not self.http.started:
            if self._http_task.done():
                self._http_task.result()  # raises the bind error
            await asyncio.sleep(0.02)
        # Port 0 asks the system for a free one: no probe-then-bind race; this is the one it gave.
        self.bound_port = int(self.http.servers[0].sockets[0].getsockname()[1])
        self.started.set()
        log.info(
            "platform.started",
            services=list(self.services),
            port=self.bound_port,
            nats=url,
            database=settings.sqlalchemy_url.split("@")[-1],
        )

    def _git(self, settings: CommonSettings, service: str, push: PushCredentials | None = None) -> Git:
        return Git(
            settings.workspaces / service,
            timeout=settings.git_timeout_seconds,
            allow_local=settings.allow_local_repositories,
            allowlist=settings.repository_hosts,
            max_repository_mb=settings.max_repository_mb,
            clone_depth=settings.git_clone_depth,
            push_credentials=push,
        )

    async def _dead_lettered(self, envelope: Envelope, reason: str) -> None:
        assert self.database is not None and self.relay is not None
        async with self.database.transaction() as session:
            await fail_feature(session, envelope.execution_id, f"{reason} (message dead-lettered)")
        self.relay.wake()

    async def stop(self) -> None:
        """Stop in dependency order: no new HTTP work, finish in-flight messages, flush the outbox. Each
        step's duration is logged (`platform.stopped`), so a slow shutdown says where it waited."""
        started = time.monotonic()
        steps: dict[str, float] = {}

        @contextlib.asynccontextmanager
        async def step(name: str) -> AsyncIterator[None]:
            began = time.monotonic()
            yield
            steps[name] = round(time.monotonic() - began, 3)

        if self.http is not None:
            async with step("http"):
                if self.database is not None:
                    close_streams(self.database)  # open event streams end now; clients resume elsewhere
                self.http.should_exit = True
                if self._http_task:
                    await self._http_task
        if self.bus is not None:
            async with step("drain"):
                await self.bus.stop_consuming(self.settings.shutdown_grace_seconds)
        for service in self._services:
            async with step(type(service).__name__):
                await service.stop()
        if self.switch is not None:
            async with step("kill_switch"):
                await self.switch.stop()
        if self.relay is not None:
            async with step("outbox"):
                await self.relay.stop()
        if self.bus is not None:
            async with step("bus"):
                await self.bus.close()
        if self.database is not None:
            async with step("database"):
                await self.database.close()
        if self.nats is not None:
            async with step("nats_server"):
                await self.nats.stop()
        log.info("platform.stopped", seconds=round(time.monotonic() - started, 3), steps=steps)

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            log.info("platform.stopping")
            await self.stop()
