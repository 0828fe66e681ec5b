"""Worker scale-out: features delivered per minute with 1, 2 and 4 worker processes.

Each feature's agent is scripted with 200 ms of model latency per turn (8 distinct turns: the stuck
detector stops an agent repeating itself), so a worker spends most
of its time waiting on "the model", as real workers do; the test command is trivial so that the executor
(scaled separately, see docs/deployment.md) is not what is measured. Everything else is real: separate OS
processes for gateway, reviewer, executor and N workers, a PostgreSQL database of its own, a private
nats-server, git checkouts and pushes. Prints throughput and the scaling efficiency
throughput(N) / (N x throughput(1)), all measured in this one run.

    .venv/bin/python bench/bench_scaling.py [--features 16] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service_feature.bus.embedded import EmbeddedNatsServer
from service_feature.demo import create_origin
from tests.support.cluster import Cluster, issue_admin_key
from tests.support.databases import admin_sql
from tests.support.platform import EXAMPLES, call, feature_request, greeting_turns, turn, write_script

TURN_LATENCY_MS = 200


def run_once(workers: int, features: int, root: Path) -> float:
    """Deliver `features` features with `workers` worker processes; returns features per minute."""
    database = f"sf_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{database}"'))
    nats = EmbeddedNatsServer(root / "nats")
    asyncio.run(nats.start())
    origin = create_origin(EXAMPLES / "demo-repo", root / "origin")
    scripts = write_script(
        root / "scripts",
        [turn(call("list_files", path=path)) for path in ("src", "tests")]
        + [
            turn(call("read_file", path=path))
            for path in ("README.md", "pyproject.toml", "src/demo_app/calculator.py")
        ]
        + greeting_turns(),
        latency_ms=TURN_LATENCY_MS,
    )
    cluster = Cluster(
        root / "cluster",
        f"postgres://postgres@127.0.0.1:5432/{database}",
        nats.url,
        env={
            "LLM_PROVIDER": "scripted",
            "LLM_SCRIPT": str(scripts),
            "SF_WORKER_CONCURRENCY": "1",
            "MAX_CONCURRENT_EXECUTIONS": "4",
            "LOG_LEVEL": "WARNING",
        },
    )
    try:
        cluster.migrate()
        gateway = cluster.start("gateway")
        cluster.start("reviewer")
        cluster.start("executor")
        for number in range(workers):
            cluster.start("worker", f"worker-{number}")
        cluster.wait_ready()
        headers = {"Authorization": f"Bearer {asyncio.run(issue_admin_key(cluster.database_url))}"}
        ids = [f"bench{number:03}" for number in range(features)]
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as api:
            started = time.monotonic()
            for execution_id in ids:
                request = feature_request(
                    origin, execution_id, test_command="python -c \"print('1 passed')\""
                )
                api.post("/api/v1/features", json=request).raise_for_status()
            while True:
                page = api.get("/api/v1/features", params={"status": "delivered", "limit": 1}).json()
                if page["total"] == features:
                    break
                failed = api.get("/api/v1/features", params={"status": "failed", "limit": 1}).json()["total"]
                if failed:
                    raise RuntimeError(f"{failed} feature(s) failed; see {root / 'cluster'}")
                time.sleep(0.05)
            elapsed = time.monotonic() - started
        return features / elapsed * 60
    finally:
        cluster.stop()
        asyncio.run(nats.stop())
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    results: dict[int, float] = {}
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="sf-bench-") as scratch:
            results[workers] = run_once(workers, args.features, Path(scratch))
        print(f"{workers} worker(s): {results[workers]:6.1f} features/min", flush=True)
    base = results.get(1)
    if base:
        print("\nworkers  features/min  speed-up  efficiency")
        for workers, throughput in results.items():
            speedup = throughput / base
            print(f"{workers:>7}  {throughput:>12.1f}  {speedup:>7.2f}x  {speedup / workers:>10.2f}")


if __name__ == "__main__":
    main()
