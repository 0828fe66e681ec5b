"""SIGKILL the whole embedded platform while a feature is being tested; after a restart on the same data
dir every accepted feature completes and is delivered exactly once."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from service_feature.auth import generate_key
from service_feature.bus.embedded import free_port
from tests.support.platform import FINAL, feature_request, greeting_turns, write_script

pytestmark = pytest.mark.xdist_group("crash")
ADMIN_KEY = generate_key()
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service_feature.cli", "up", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the platform exited during start-up"
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the platform did not become ready")


def _status(url: str, execution_id: str) -> str:
    return str(httpx.get(f"{url}/api/v1/features/{execution_id}", timeout=5, headers=AUTH).json()["status"])


def test_sigkill_while_testing_then_restart_delivers_everything_exactly_once(
    tmp_path: Path, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    env = {
        **os.environ,
        "SF_DATA_DIR": str(tmp_path / "data"),
        "ALLOW_LOCAL_REPOSITORIES": "true",
        "LLM_PROVIDER": "scripted",
        "LLM_SCRIPT": str(scripts),
        "SF_ACK_WAIT_SECONDS": "2",
        "SF_ADMIN_KEY": ADMIN_KEY,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "platform.log"
    first = _start(env, port, log)
    try:
        _wait_ready(url, first)
        slow = feature_request(
            origin, "slow", test_command="sleep 4; python -m pytest -q -p no:cacheprovider"
        )
        assert httpx.post(f"{url}/api/v1/features", json=slow, timeout=10, headers=AUTH).status_code == 202
        deadline = time.monotonic() + 60
        while _status(url, "slow") != "testing":
            assert time.monotonic() < deadline, "the feature never reached testing"
            time.sleep(0.05)
        others = [f"after{n}" for n in range(3)]
        for execution_id in others:
            response = httpx.post(
                f"{url}/api/v1/features", json=feature_request(origin, execution_id), timeout=10, headers=AUTH
            )
            assert response.status_code == 202
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()

    second = _start(env, port, log)
    try:
        _wait_ready(url, second)
        features = {}
        deadline = time.monotonic() + 120
        for execution_id in ["slow", *others]:
            while (status := _status(url, execution_id)) not in FINAL:
                assert time.monotonic() < deadline, (
                    f"{execution_id} stuck in {status}; log: {log.read_text()[-3000:]}"
                )
                time.sleep(0.2)
            features[execution_id] = httpx.get(
                f"{url}/api/v1/features/{execution_id}", timeout=5, headers=AUTH
            ).json()
        for execution_id, feature in features.items():
            assert feature["status"] == "delivered", (execution_id, feature["failure_reason"])
            events = httpx.get(
                f"{url}/api/v1/features/{execution_id}/events", timeout=5, headers=AUTH
            ).json()["events"]
            counts = Counter(event["type"] for event in events)
            assert counts["status.delivered"] == 1
            assert counts["feature.accepted"] == 1
            branch = f"feature/{execution_id}"
            commits = subprocess.run(
                ["git", "--git-dir", str(origin), "rev-list", "--count", f"main..{branch}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert commits == "1"
        slow_events = httpx.get(f"{url}/api/v1/features/slow/events", timeout=5, headers=AUTH).json()[
            "events"
        ]
        assert sum(1 for e in slow_events if e["type"] == "tests.completed") == 1
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            raise
    assert second.returncode == 0
