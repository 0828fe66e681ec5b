"""Faults a cluster meets, on the distributed processes (one OS process per service, PostgreSQL, NATS):
a service SIGKILLed in the middle of the step it owns and started again, NATS restarted mid-run,
PostgreSQL restarted mid-run. After each, every accepted feature ends exactly once — one `delivered`
event and the branch holding the delivered commit — and nothing needed an operator: the services
recovered by themselves.

No bound here is a claim about speed: each wait is a guard against hanging forever (PATIENCE), far above
what a loaded 2-core machine needs. The slow steps are made slow on purpose (a model with latency, a test
command that sleeps) so that the fault lands inside them however busy the machine is.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer, free_port
from tests.support.cluster import Cluster, prepared_cluster
from tests.support.platform import feature_request, greeting_turns, write_script

PATIENCE = 240.0
ACK_WAIT = "5"  # a SIGKILLed step comes back after this
PYTEST = "python -m pytest -q -p no:cacheprovider"
# Slow on the patched run only: the feature sits in `testing` long enough to be hit there.
SLOW_TESTS = f"if [ -f src/demo_app/greeting.py ]; then sleep 8; fi; {PYTEST}"
SLOW_TURN_MS = 3000  # the model's latency per turn: the feature sits in `generating`
FINAL = {"delivered", "failed", "rejected", "cancelled", "awaiting_approval"}


def _wait_for(api: httpx.Client, execution_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            feature: dict[str, Any] = api.get(f"/api/v1/features/{execution_id}").json()
            if feature.get("status") in statuses:
                return feature
        except (httpx.TransportError, ValueError):
            pass  # the gateway is down or restarting: keep asking
        assert time.monotonic() < deadline, f"{execution_id} never reached {statuses}"
        time.sleep(0.1)


def _check_exactly_once(api: httpx.Client, origin: Path, execution_id: str) -> None:
    feature = _wait_for(api, execution_id, FINAL)
    assert feature["status"] == "delivered", feature["failure_reason"]
    events = api.get(f"/api/v1/features/{execution_id}/events").json()["events"]
    statuses = [event["status"] for event in events]
    assert statuses.count("delivered") == 1, statuses
    assert statuses[-1] == "delivered", statuses
    # A step redone after the fault would record its event again: each (event, attempt) is there once.
    steps = [(event["type"], event["detail"].get("attempt")) for event in events]
    assert len(set(steps)) == len(steps), steps
    branch = subprocess.run(
        ["git", "--git-dir", str(origin), "rev-parse", f"feature/{execution_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert branch.stdout.strip() == feature["delivered_commit"]


@contextmanager
def _slow_cluster(
    root: Path, database_url: str, nats_url: str, *, exits_cleanly: bool = False
) -> Iterator[tuple[Cluster, httpx.Client]]:
    """All four services as processes, a model slow enough for a fault to land mid-step, and an admin's
    client of the gateway; stopped (SIGTERM) at the end, and with `exits_cleanly` every exit code 0."""
    slow_model = write_script(root / "model", greeting_turns(), latency_ms=SLOW_TURN_MS)
    env = {"LLM_SCRIPT": str(slow_model), "SF_ACK_WAIT_SECONDS": ACK_WAIT}
    cluster, headers = prepared_cluster(root / "cluster", database_url, nats_url, env)
    try:
        gateway = cluster.start("gateway")
        for service in ("worker", "reviewer", "executor"):
            cluster.start(service)
        cluster.wait_ready()
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as api:
            yield cluster, api
    finally:
        codes = cluster.stop()
    if exits_cleanly:
        assert all(code == 0 for code in codes.values()), codes


def _submit(api: httpx.Client, origin: Path, execution_id: str, **overrides: str) -> None:
    response = api.post("/api/v1/features", json=feature_request(origin, execution_id, **overrides))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("service", "stage"),
    [("worker", "generating"), ("executor", "testing"), ("gateway", "queued")],
    ids=["worker-generating", "executor-testing", "gateway-accepted"],
)
def test_a_service_killed_mid_step_and_restarted_loses_and_repeats_nothing(
    service: str,
    stage: str,
    tmp_path: Path,
    origin: Path,
    postgres_url: str,
    nats_server: EmbeddedNatsServer,
) -> None:
    with _slow_cluster(tmp_path, postgres_url, nats_server.url) as (cluster, api):
        ids = [f"{service}-{n}" for n in range(2)]
        for execution_id in ids:
            _submit(api, origin, execution_id, test_command=SLOW_TESTS)
        if stage != "queued":  # the gateway is killed right after accepting: its outbox may hold them
            _wait_for(api, ids[0], {stage})
        cluster.kill(service)
        cluster.start(service)
        cluster.wait_ready()
        if service == "gateway":
            api.base_url = httpx.URL(cluster.replicas["gateway"].url)
        for execution_id in ids:
            _check_exactly_once(api, origin, execution_id)


def test_nats_restarting_mid_run_loses_and_repeats_nothing(
    tmp_path: Path, origin: Path, postgres_url: str, nats_server: EmbeddedNatsServer
) -> None:
    with _slow_cluster(tmp_path, postgres_url, nats_server.url) as (_cluster, api):
        ids = [f"nats-{n}" for n in range(2)]
        for execution_id in ids:
            _submit(api, origin, execution_id)
        _wait_for(api, ids[0], {"generating"})
        asyncio.run(nats_server.stop())
        time.sleep(2)  # the services see the bus gone
        asyncio.run(nats_server.start())  # same port, same JetStream storage
        for execution_id in ids:
            _check_exactly_once(api, origin, execution_id)
        _submit(api, origin, "nats-after")  # and new work flows
        _check_exactly_once(api, origin, "nats-after")


# -- PostgreSQL restarted: a throwaway server of its own ---------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.skip("no PostgreSQL server binaries (pg_ctl) on this machine")
    return found[-1].parent


def _as_postgres(*argv: str) -> list[str]:
    """initdb and the server refuse root: run them as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, Callable[[], None]]]:
    """(URL, restart) of a PostgreSQL server of this test's own, trust auth on 127.0.0.1. Its data lives
    outside pytest's temporary folders, which the postgres user may not enter."""
    bin_dir, root = _postgres_bin(), Path(tempfile.mkdtemp(prefix="sf-chaos-pg-"))
    data, port = root / "data", free_port()
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
    ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "log"), "-w"]
    subprocess.run(_as_postgres(*ctl, "start"), check=True, capture_output=True)

    def restart() -> None:
        subprocess.run(_as_postgres(*ctl, "-m", "fast", "restart"), check=True, capture_output=True)

    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres", restart
    finally:
        subprocess.run(_as_postgres(*ctl, "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_restarting_mid_run_loses_and_repeats_nothing(
    tmp_path: Path,
    origin: Path,
    nats_server: EmbeddedNatsServer,
    private_postgres: tuple[str, Callable[[], None]],
) -> None:
    url, restart = private_postgres
    with _slow_cluster(tmp_path, url, nats_server.url, exits_cleanly=True) as (_cluster, api):
        ids = [f"pg-{n}" for n in range(2)]
        for execution_id in ids:
            _submit(api, origin, execution_id)
        _wait_for(api, ids[0], {"generating"})
        restart()
        for execution_id in ids:
            _check_exactly_once(api, origin, execution_id)
