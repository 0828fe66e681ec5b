"""A private Docker engine (tests/support/docker_engine.py) for the Docker tests of this directory.

One engine per test worker: every module here puts its tests in the `docker` xdist group, so one worker runs
them all and only one engine is started. Without `SF_REQUIRE_DOCKER=1` a machine that cannot have one skips
them with the reason; with it, that is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker  # type: ignore[import-untyped]
import pytest

from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.docker import DockerSandbox
from tests.support.docker_engine import DockerEngine, DockerUnavailable, private_engine, required


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    try:
        with private_engine() as engine:
            yield engine
    except DockerUnavailable as error:
        if required():
            pytest.fail(f"SF_REQUIRE_DOCKER=1 but no Docker engine can be had: {error}")
        pytest.skip(f"no Docker engine: {error}")


@pytest.fixture(scope="session")
def docker_client(docker_engine: DockerEngine) -> Iterator[object]:
    client = docker.DockerClient(base_url=docker_engine.host)
    yield client
    client.close()


@pytest.fixture
def docker_sandbox(docker_engine: DockerEngine, docker_client: object) -> DockerSandbox:
    return DockerSandbox(image=docker_engine.image, client=docker_client)


@pytest.fixture
def limits() -> Limits:
    return Limits(wall_seconds=30, memory_mb=256, pids=64, cpu_seconds=30, tmp_size_mb=16, output_bytes=65536)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path
