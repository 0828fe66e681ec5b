"""The platform as separate OS processes — one per service replica — against a PostgreSQL database and a
nats-server, the way the distributed deployment runs it (`service-feature <service>`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service_feature.bus.embedded import free_port


@dataclass
class Replica:
    service: str
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text


@dataclass
class Cluster:
    root: Path
    database_url: str
    nats_url: str
    env: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, Replica] = field(default_factory=dict)

    def _environ(self, name: str, port: int) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "QUEUE_FEATURE_REQUEST_URI": f"{self.nats_url}/feature.requests",
            "SERVER_ADDRESS": f"127.0.0.1:{port}",
            "SF_DATA_DIR": str(self.root / name),
            "WORKSPACE_BASE_PATH": str(self.root / name / "workspaces"),  # no shared disk between replicas
            "ALLOW_LOCAL_REPOSITORIES": "true",
            # The tests and benchmarks submit bursts with one key: lift the per-key admission limits.
            "SF_SUBMIT_RATE_PER_MINUTE": "10000",
            "SF_MAX_QUEUED_PER_KEY": "10000",
            **self.env,
        }

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "service_feature.cli", "db", "upgrade"],
            env=self._environ("migrate", 0),
            check=True,
            capture_output=True,
        )

    def start(self, service: str, name: str | None = None) -> Replica:
        name = name or service
        port = free_port()
        log = self.root / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "service_feature.cli", service],
                env=self._environ(name, port),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(service, name, port, process, log)
        self.replicas[name] = replica
        return replica

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for replica in self.replicas.values():
            while True:
                assert replica.process.poll() is None, (
                    f"{replica.name} exited: {replica.log.read_text()[-2000:]}"
                )
                try:
                    if httpx.get(f"{replica.url}/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (
                    f"{replica.name} not ready: {replica.log.read_text()[-2000:]}"
                )
                time.sleep(0.1)

    def kill(self, name: str) -> None:
        replica = self.replicas.pop(name)
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(60)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM every replica (a graceful drain) and return their exit codes. Each gets up to 90 s: the
        default SF_SHUTDOWN_GRACE_SECONDS (25) plus closing down on a loaded 2-core machine."""
        for replica in self.replicas.values():
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, replica in self.replicas.items():
            try:
                codes[name] = replica.process.wait(90)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                codes[name] = None
        return codes


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in an exposition text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def issue_admin_key(database_url: str) -> str:
    """An admin API key written straight into the database, as `service-feature apikey create` does."""
    from service_feature.auth import Role, issue_key
    from service_feature.store import Database

    database = Database(database_url.replace("postgres://", "postgresql+asyncpg://"))
    try:
        return (await issue_key(database, name="test-admin", role=Role.admin)).secret
    finally:
        await database.close()


def prepared_cluster(
    root: Path, postgres_url: str, nats_url: str, env: dict[str, str]
) -> tuple[Cluster, dict[str, str]]:
    """A migrated cluster of a scripted platform, and the headers of an admin key for its API."""
    cluster = Cluster(
        root,
        postgres_url.replace("postgresql+asyncpg://", "postgres://"),
        nats_url,
        {"LLM_PROVIDER": "scripted", **env},
    )
    cluster.migrate()
    return cluster, {"Authorization": f"Bearer {asyncio.run(issue_admin_key(postgres_url))}"}
