"""SIGTERM drains a worker: it stops fetching, hands its in-flight step back at once (nak) after the grace
period, and exits 0; another replica finishes the feature before the ack wait could have expired.

No bound here depends on how busy the machine is; each separates behaviours minutes apart:
- the worker that is stopped talks to a slow model (SLOW_TURN per turn, three turns), the one that stays to
  a fast one (LLM_SCRIPT is per replica). So the stopped worker is still in its first turn when SIGTERM
  comes, however long the second replica took to start, and it cannot finish the step by itself before
  3 x SLOW_TURN;
- it must exit within EXIT_BOUND: a drain that cancels the step after the 1 s grace takes seconds (10.5 s
  once, on a 2-core machine under full load), one that waits for the step or for the ack wait takes
  minutes;
- the feature must be delivered before `submitted + ACK_WAIT`, the earliest moment the ack wait could have
  redelivered a step fetched after the submission: the step came back by the nak.
"""

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from service_feature.bus.embedded import EmbeddedNatsServer
from tests.support.cluster import prepared_cluster
from tests.support.platform import feature_request, greeting_turns, write_script

pytestmark = pytest.mark.xdist_group("cluster")

ACK_WAIT = 240.0
SLOW_TURN = ACK_WAIT / 4
EXIT_BOUND = ACK_WAIT / 4
# Waiting for a state the platform reaches in seconds on a quiet machine: a guard against hanging forever,
# not a claim about speed.
PATIENCE = 120.0


def test_sigterm_hands_in_flight_work_to_another_replica(
    tmp_path: Path, origin: Path, scripts: Path, postgres_url: str, nats_server: EmbeddedNatsServer
) -> None:
    slow_model = write_script(tmp_path / "slow-model", greeting_turns(), latency_ms=int(SLOW_TURN * 1000))
    fast_model = write_script(scripts, greeting_turns())
    cluster, headers = prepared_cluster(
        tmp_path / "cluster",
        postgres_url,
        nats_server.url,
        {
            "LLM_SCRIPT": str(slow_model),
            "SF_ACK_WAIT_SECONDS": str(ACK_WAIT),
            "SF_SHUTDOWN_GRACE_SECONDS": "1",
        },
    )
    gateway = cluster.start("gateway")
    cluster.start("reviewer")
    cluster.start("executor")
    leaving = cluster.start("worker", "worker-leaving")
    try:
        cluster.wait_ready()
        with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as api:
            submitted_at = time.monotonic()
            api.post("/api/v1/features", json=feature_request(origin, "drained")).raise_for_status()
            deadline = submitted_at + PATIENCE
            while api.get("/api/v1/features/drained").json()["status"] != "generating":
                assert time.monotonic() < deadline, "never reached generating"
                time.sleep(0.05)
            cluster.env["LLM_SCRIPT"] = str(fast_model)  # for the replica started next
            cluster.start("worker", "worker-staying")
            cluster.wait_ready()
            # Still in the slow model's first turn: the step is in flight on the leaving worker.
            assert api.get("/api/v1/features/drained").json()["status"] == "generating"

            leaving.process.send_signal(signal.SIGTERM)
            try:
                code = leaving.process.wait(EXIT_BOUND)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the drained worker did not exit within {EXIT_BOUND:.0f} s: it kept its step")
            assert code == 0
            del cluster.replicas["worker-leaving"]

            # The step it held was fetched after `submitted_at`: the ack wait cannot have handed it to the
            # staying worker before this.
            redelivery_at = submitted_at + ACK_WAIT
            while (feature := api.get("/api/v1/features/drained").json())["status"] not in {
                "delivered",
                "failed",
            }:
                assert time.monotonic() < redelivery_at, f"not handed back: {feature['status']}"
                time.sleep(0.1)
            assert feature["status"] == "delivered", feature["failure_reason"]
    finally:
        codes = cluster.stop()
    assert all(code == 0 for code in codes.values()), codes
