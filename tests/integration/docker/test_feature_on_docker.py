"""The demo project's feature, end to end on the embedded platform with SANDBOX_TYPE=docker: setup, the
baseline and the patched run all happen in containers of the private engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docker_engine import DockerEngine
from tests.support.platform import (
    FINAL,
    feature_request,
    greeting_turns,
    running_platform,
    wait_for,
    write_script,
)

pytestmark = pytest.mark.xdist_group("docker")


async def test_the_demo_feature_is_delivered_with_the_docker_sandbox(
    docker_engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    docker_settings = {
        **docker_engine.environment(),
        "SANDBOX_TYPE": "docker",
        "SANDBOX_DOCKER_IMAGE": docker_engine.image,
        # The private engine has no bridge network: setup reaches the package index through the host's.
        "SANDBOX_SETUP_NETWORK_FALLBACK": "host",
    }
    async with running_platform(tmp_path, monkeypatch, scripts, **docker_settings) as api:
        response = await api.post("/api/v1/features", json=feature_request(origin, "docker1"))
        assert response.status_code == 202
        feature = await wait_for(api, "docker1", FINAL, timeout=240)

        assert feature["status"] == "delivered", feature["failure_reason"]
        assert feature["test_summary"]["passed"] == 2
        assert feature["test_summary"]["failed"] == 0
        assert feature["test_summary"]["sandbox"] == "docker"


async def test_an_image_that_cannot_run_the_setup_fails_the_feature_clearly(
    docker_engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: Path, scripts: Path
) -> None:
    write_script(scripts, greeting_turns())
    missing = "service-feature-no-such-image:1"
    docker_settings = {
        **docker_engine.environment(),
        "SANDBOX_TYPE": "docker",
        "SANDBOX_DOCKER_IMAGE": missing,
    }
    async with running_platform(tmp_path, monkeypatch, scripts, **docker_settings) as api:
        response = await api.post("/api/v1/features", json=feature_request(origin, "docker2"))
        assert response.status_code == 202
        feature = await wait_for(api, "docker2", FINAL, timeout=120)

    assert feature["status"] == "failed"
    assert missing in feature["failure_reason"]
    assert "uv venv" in feature["failure_reason"]  # the command the image could not run
