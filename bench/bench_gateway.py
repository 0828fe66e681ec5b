"""Gateway submissions per second against bare FastAPI validating the same body, side by side in one run.

The gateway: `service-feature gateway` as its own process on PostgreSQL (a fresh database) and the
machine's NATS, one uvicorn worker (as deployed: scale out with replicas), an admin key, the per-key
admission limits lifted (the open-feature limit far above the backlog, so it is checked but never reached).
The baseline: a bare FastAPI app in the same kind of process that validates the same `FeatureRequest` body
and answers 202. Load: wrk (Debian's package), 2 threads, 32 connections, every request a new
`execution_id` (a Lua script), for `--seconds`, on an empty store; then `--backlog` more features are
stored and queued at once, in bulk through SQL (not through the API: 50,000 would take minutes), all the
bench key's and all open, with their log entries and their (published) outbox rows, then vacuumed and
checkpointed, and the gateway is measured again, to see whether the rate stays flat as features
accumulate. The baseline runs before each gateway measurement and each ratio is taken against the baseline
just before it (the machine is shared). Printed: requests/s, p50/p99 latency, non-2xx counts, the ratios.

    .venv/bin/python bench/bench_gateway.py [--seconds 10] [--backlog 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' process helpers

import asyncpg

from service_feature.auth import hash_key
from service_feature.bus.embedded import free_port
from service_feature.models import FeatureRequest
from service_feature.store.features import request_envelope
from tests.support.cluster import Cluster, issue_admin_key
from tests.support.databases import admin_sql

NATS_URL = "nats://127.0.0.1:4222"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "demo-feature.json"

BARE_APP = """
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from service_feature.models import FeatureRequest

app = FastAPI()


@app.post("/api/v1/features", status_code=202)
async def submit(request: FeatureRequest) -> JSONResponse:
    return JSONResponse({"execution_id": request.execution_id, "status": "queued"}, status_code=202)
"""

WRK_SCRIPT = """
local made = 0
function setup(thread)
  made = made + 1
  thread:set("id", made)
end
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer KEY"
request = function()
  counter = counter + 1
  local execution_id = string.format("RUN%02d%010d", id, counter)
  return wrk.format(nil, "/api/v1/features", nil, string.gsub(TEMPLATE, "EXECUTION_ID", execution_id))
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.errors.status,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


def body_template() -> str:
    request = json.loads(EXAMPLE.read_text())
    request["execution_id"] = "EXECUTION_ID"
    # An allow-listed host the gateway resolves without a network (this machine reaches no forge).
    request["repository_url"] = "https://127.0.0.1/example/repo.git"
    return json.dumps(request)


def wrk(url: str, key: str, seconds: int, scratch: Path) -> dict[str, float]:
    run = uuid.uuid4().hex[:8]  # a new id per request: this run's prefix, the wrk thread, a counter
    script = scratch / f"submit-{run}.lua"
    template = body_template().replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(f'TEMPLATE = "{template}"\n' + WRK_SCRIPT.replace("KEY", key).replace("RUN", run))
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"RESULT (\d+ \d+ \d+ \d+ \d+)", out)
    if found is None:
        raise SystemExit(f"wrk said:\n{out}")
    requests, non_2xx, p50, p99, duration = (int(x) for x in found.group(1).split())
    return {
        "rps": requests / (duration / 1e6),
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "non_2xx": non_2xx,
        "requests": requests,
    }


def start_bare(scratch: Path) -> tuple[subprocess.Popen[bytes], str]:
    (scratch / "bare_app.py").write_text(textwrap.dedent(BARE_APP))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning"],
        cwd=scratch,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/docs")
    return process, url


def wait_until_up(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(pid: int, url: str, key: str, seconds: int, scratch: Path) -> dict[str, float]:
    """wrk's figures, and the CPU the server process spent per request: unlike requests/s it hardly
    depends on what else the machine is running (the database's and the bus's CPU are not in it)."""
    before = cpu_seconds(pid)
    figures = wrk(url, key, seconds, scratch)
    figures["cpu_ms"] = (cpu_seconds(pid) - before) * 1000 / max(1.0, figures["requests"])
    return figures


def report(name: str, figures: dict[str, float]) -> None:
    print(
        f"  {name:<34} {figures['rps']:8.1f} req/s   p50 {figures['p50_ms']:7.1f} ms   "
        f"p99 {figures['p99_ms']:7.1f} ms   non-2xx {int(figures['non_2xx'])}   "
        f"process CPU {figures['cpu_ms']:.2f} ms/request"
    )


BACKLOG_SQL = (
    """
    INSERT INTO features (execution_id, submitted_by, status, request, repository_url, base_branch, title,
        attempts, agent_turns, input_tokens, output_tokens, cached_input_tokens, cost_usd, created_at,
        updated_at, version)
    SELECT 'backlog' || n, $1, 'queued',
        jsonb_set($2::jsonb, '{execution_id}', to_jsonb('backlog' || n))::json, $3, $4, $5,
        0, 0, 0, 0, 0, 0.0, now(), now(), 1
    FROM generate_series(1, $6::integer) AS n
    """,
    """
    INSERT INTO feature_events (execution_id, type, status, detail, created_at)
    SELECT 'backlog' || n, 'feature.accepted', 'queued', '{}', now()
    FROM generate_series(1, $1::integer) AS n
    """,
    """
    INSERT INTO outbox (subject, envelope, created_at, published_at)
    SELECT 'feature.requests', $1::json, now(), now() FROM generate_series(1, $2::integer) AS n
    """,
)


async def store_backlog(database_url: str, key: str, count: int) -> None:
    """`count` queued features of the bench's key, written straight into the database in bulk."""
    request = FeatureRequest.model_validate_json(body_template().replace("EXECUTION_ID", "backlog0"))
    features, events, outbox = BACKLOG_SQL
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            key_id = await connection.fetchval("SELECT id FROM api_keys WHERE key_hash = $1", hash_key(key))
            await connection.execute(
                features,
                key_id,
                request.model_dump_json(),
                request.repository_url,
                request.branch,
                request.specification.title,
                count,
            )
            await connection.execute(events, count)
            await connection.execute(outbox, request_envelope(request).model_dump_json(), count)
        # Settled as a store that grew over time would be: statistics, visibility map, the bulk load's
        # WAL checkpointed, so the loaded run measures the size of the store and not its aftermath.
        await connection.execute("VACUUM ANALYZE")
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


def main(seconds: int, backlog: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="sf-bench-gateway-"))
    database = f"sf_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{database}"'))
    database_url = f"postgres://postgres@127.0.0.1:5432/{database}"
    env = {
        "LOG_LEVEL": "WARNING",
        "REPOSITORY_ALLOWLIST": "127.0.0.1",
        "SF_MAX_QUEUED_PER_KEY": str(10 * (backlog + 100_000)),
        # The rate limit is checked on every submission but never reached: over it, fast 429s would pass
        # for throughput (the cluster's own lift, 10,000 a minute, is reached within one run).
        "SF_SUBMIT_RATE_PER_MINUTE": "100000000",
    }
    cluster = Cluster(scratch / "cluster", database_url, NATS_URL, env=env)
    bare, bare_url = start_bare(scratch)
    try:
        cluster.migrate()
        key = asyncio.run(issue_admin_key(database_url))
        gateway = cluster.start("gateway")
        cluster.wait_ready()
        wrk(bare_url, key, 2, scratch)  # warm-up, both sides
        wrk(gateway.url, key, 2, scratch)
        baseline = measure(bare.pid, bare_url, key, seconds, scratch)
        empty = measure(gateway.process.pid, gateway.url, key, seconds, scratch)
        started = time.monotonic()
        asyncio.run(store_backlog(database_url, key, backlog))
        stored_in = time.monotonic() - started
        baseline_again = measure(bare.pid, bare_url, key, seconds, scratch)
        loaded = measure(gateway.process.pid, gateway.url, key, seconds, scratch)
        stored = asyncio.run(count_features(database_url))
        print(f"gateway submissions against bare FastAPI validating the same body ({seconds} s each, wrk)")
        report("bare FastAPI (validation only)", baseline)
        report("gateway, empty store", empty)
        report("bare FastAPI, again", baseline_again)
        report(f"gateway, {stored:,} features stored", loaded)
        print(f"backlog of {backlog:,} features stored in bulk in {stored_in:.1f} s")
        print(f"ratio gateway / bare, empty store:  {empty['rps'] / baseline['rps']:.3f}x (goal >= 0.25x)")
        print(f"ratio gateway / bare, loaded store: {loaded['rps'] / baseline_again['rps']:.3f}x")
        print(f"ratio loaded / empty: {loaded['rps'] / empty['rps']:.2f}x (goal: flat)")
        print(f"p99 empty / loaded: {empty['p99_ms']:.1f} / {loaded['p99_ms']:.1f} ms (goal <= 50 ms)")
        cpu_ratio = baseline["cpu_ms"] / empty["cpu_ms"]
        print(f"process CPU per request, bare / gateway (empty store): {cpu_ratio:.3f}x")
        if empty["non_2xx"] or loaded["non_2xx"]:
            print_failures(gateway.log)
    finally:
        bare.terminate()
        cluster.stop()
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        shutil.rmtree(scratch, ignore_errors=True)


def print_failures(log: Path, shown: int = 12) -> None:
    """Non-2xx answers make a run look faster than it is: say what the gateway logged about them (a 429 of
    an admission limit logs nothing)."""
    lines = [line for line in log.read_text(errors="replace").splitlines() if "error" in line.lower()]
    print(
        f"the gateway answered non-2xx (the figures above overstate it); {len(lines)} error lines in its log:"
    )
    for line in lines[-shown:]:
        print("  " + line[:300])


async def count_features(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM features"))
    finally:
        await connection.close()


if __name__ == "__main__":
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=50_000)
    arguments = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main(arguments.seconds, arguments.backlog)
