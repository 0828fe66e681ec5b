"""The platform's own cost per feature against the same work done by hand, side by side in one run.

The platform: the embedded default in this process (private nats-server, SQLite, bwrap sandbox when it
works), a scripted zero-latency model that writes two files and finishes, on the demo repository; features
one after another, timed from submission to `delivered`. The first pays the environment's setup; the
others (warm) are what a user's second feature costs. Where the time goes comes from the feature's event log
(time spent in each status, median over the warm features).

By hand: the same work as a shell would do it, in the same run: clone, write the two files, pytest in a
virtualenv made once beforehand (as the platform's cached environment is), commit, push a branch.

    .venv/bin/python bench/bench_feature_overhead.py [--features 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fixtures: the demo's script

from service_feature.auth import generate_key
from service_feature.config import CommonSettings
from service_feature.demo import create_origin
from service_feature.runtime import Platform
from tests.support.platform import (
    EXAMPLES,
    GREETING,
    GREETING_TEST,
    feature_request,
    greeting_turns,
    write_script,
)

_IDENTITY = ["-c", "user.name=Bench", "-c", "user.email=bench@localhost"]


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *_IDENTITY, *args], cwd=cwd, check=True, capture_output=True)


def prepare_virtualenv(scratch: Path) -> Path:
    """A virtualenv with pytest, made once (not timed): the platform's environment is cached too."""
    venv = scratch / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "pytest"], check=True)
    return venv


def by_hand(origin: Path, venv: Path, scratch: Path, number: int) -> float:
    """One feature done by hand: clone, write, test, commit, push. Seconds."""
    work = scratch / f"hand-{number}"
    started = time.perf_counter()
    _git("clone", "-q", str(origin), str(work))
    (work / "src" / "demo_app" / "greeting.py").write_text(GREETING)
    (work / "tests" / "test_greeting.py").write_text(GREETING_TEST)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q"], cwd=work, check=True, capture_output=True
    )
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "Add greeting", cwd=work)
    _git("push", "-q", "origin", f"HEAD:refs/heads/hand/{number}", cwd=work)
    return time.perf_counter() - started


def time_in_status(events: list[dict[str, Any]], submitted: datetime) -> dict[str, float]:
    """Seconds the feature spent in each status, from its status events."""
    spent: dict[str, float] = defaultdict(float)
    status, since = "queued", submitted
    for event in events:
        if not event["type"].startswith("status."):
            continue
        moved = datetime.fromisoformat(event["created_at"])
        spent[status] += (moved - since).total_seconds()
        status, since = event["status"], moved
    return dict(spent)


async def through_platform(origin: Path, scratch: Path, count: int) -> list[tuple[float, dict[str, float]]]:
    scripts = write_script(scratch / "scripts", greeting_turns())
    admin = generate_key()
    os.environ.update(
        {
            "SF_DATA_DIR": str(scratch / "data"),
            "ALLOW_LOCAL_REPOSITORIES": "true",
            "LLM_PROVIDER": "scripted",
            "LLM_SCRIPT": str(scripts),
            "SF_ADMIN_KEY": admin,
            "SERVER_ADDRESS": "127.0.0.1:0",
        }
    )
    platform = Platform(settings=CommonSettings())
    await platform.start()
    timings = []
    try:
        url = f"http://127.0.0.1:{platform.bound_port}"
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as api:
            for number in range(count):
                execution_id = f"overhead{number:04d}"
                started = time.perf_counter()
                response = await api.post("/api/v1/features", json=feature_request(origin, execution_id))
                response.raise_for_status()
                submitted = datetime.fromisoformat(response.json()["created_at"])
                feature = await _finished(api, execution_id)
                wall = time.perf_counter() - started
                if feature["status"] != "delivered":
                    raise SystemExit(f"{execution_id} ended {feature['status']}: {feature['failure_reason']}")
                events = (await api.get(f"/api/v1/features/{execution_id}/events")).json()["events"]
                timings.append((wall, time_in_status(events, submitted)))
    finally:
        await platform.stop()
    return timings


async def _finished(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    while True:
        feature: dict[str, Any] = (await api.get(f"/api/v1/features/{execution_id}")).json()
        if feature["status"] in {"delivered", "failed", "rejected", "cancelled", "awaiting_approval"}:
            return feature
        await asyncio.sleep(0.02)


def main(count: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="sf-bench-overhead-"))
    try:
        origin = create_origin(EXAMPLES / "demo-repo", scratch / "origin")
        venv = prepare_virtualenv(scratch)
        hand = [by_hand(origin, venv, scratch, number) for number in range(count)]
        platform = asyncio.run(through_platform(origin, scratch, count))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    warm = platform[1:]
    hand_median = statistics.median(hand)
    warm_median = statistics.median(wall for wall, _ in warm)
    print(f"by hand (clone, write, pytest, commit, push): median {hand_median:.3f} s over {count}")
    print(f"platform, first feature (setup + baseline):    {platform[0][0]:.3f} s")
    print(f"platform, warm features:                       median {warm_median:.3f} s over {len(warm)}")
    print(f"ratio warm / by hand: {warm_median / hand_median:.2f}x (goal <= 2.0x)")
    statuses = sorted({status for _, spent in warm for status in spent})
    breakdown = {
        status: statistics.median(spent.get(status, 0.0) for _, spent in warm) for status in statuses
    }
    print("where a warm feature's time goes (median seconds in each status):")
    for status, seconds in sorted(breakdown.items(), key=lambda item: -item[1]):
        print(f"  {status:<18} {seconds:6.3f}")
    print(json.dumps({"hand_s": hand_median, "warm_s": warm_median, "ratio": warm_median / hand_median}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=8)
    main(parser.parse_args().features)
