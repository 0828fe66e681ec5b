"""DockerSandbox against a real engine; skipped where no Docker engine answers (as on the reference host)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.docker import DockerSandbox

IMAGE = "python:3.11-slim"


@pytest.fixture(scope="module")
def docker_sandbox() -> DockerSandbox:
    error = DockerSandbox.probe_error()
    if error is not None:
        pytest.skip(f"no Docker engine answers: {error}")
    return DockerSandbox(image=IMAGE)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    path.chmod(0o777)  # the container user is 65534
    return path


async def test_runs_in_the_workspace(docker_sandbox: DockerSandbox, workspace: Path, limits: Limits) -> None:
    result = await docker_sandbox.run(
        ["sh", "-c", "pwd; id -u; echo hi > out.txt; exit 4"], workdir=workspace, env={}, limits=limits
    )

    assert (result.exit_code, result.output) == (4, "/workspace\n65534\n")
    assert (workspace / "out.txt").read_text() == "hi\n"


async def test_has_no_network_and_a_read_only_root(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    code = (
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "    print('CONNECTED')\n"
        "except OSError:\n    print('NO-NET')\ntry:\n    open('/x', 'w')\nexcept OSError:\n    print('RO')"
    )

    result = await docker_sandbox.run(["python", "-c", code], workdir=workspace, env={}, limits=limits)

    assert result.output == "NO-NET\nRO\n"


async def test_timeout_kills_the_container(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    result = await docker_sandbox.run(
        ["sleep", "60"], workdir=workspace, env={}, limits=dataclasses.replace(limits, wall_seconds=2)
    )

    assert result.timed_out
    assert result.duration_seconds < 30
