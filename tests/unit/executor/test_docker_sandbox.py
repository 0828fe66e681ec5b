"""DockerSandbox's container settings and its wait/kill/log/remove handling, against a fake Docker client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service_feature.executor.sandbox.base import TRUNCATION_MARKER, Limits
from service_feature.executor.sandbox.docker import DockerSandbox


class FakeContainer:
    def __init__(self, exit_code: int | None, chunks: list[bytes]) -> None:
        self.exit_code = exit_code  # None: runs until killed
        self.chunks = chunks
        self.stopped = threading.Event()
        self.killed = self.removed = False
        if exit_code is not None:
            self.stopped.set()

    def wait(self, timeout: float) -> dict[str, int]:
        if not self.stopped.wait(timeout):
            raise TimeoutError("read timed out")
        return {"StatusCode": 137 if self.killed else int(self.exit_code or 0)}

    def kill(self) -> None:
        self.killed = True
        self.stopped.set()

    def logs(self, **options: Any) -> Iterator[bytes]:
        assert options["stream"] is True
        return iter(self.chunks)

    def remove(self, force: bool) -> None:
        self.removed = force


class FakeClient:
    def __init__(self, container: FakeContainer) -> None:
        self.container = container
        self.options: dict[str, Any] = {}
        self.containers = self

    def run(self, image: str, **options: Any) -> FakeContainer:
        self.options = {"image": image, **options}
        return self.container


LIMITS = Limits(
    wall_seconds=5, memory_mb=300, pids=50, cpu_seconds=7, file_size_mb=2, tmp_size_mb=9, output_bytes=10
)


async def test_container_is_locked_down(tmp_path: Path) -> None:
    client = FakeClient(FakeContainer(exit_code=0, chunks=[b"ok\n"]))

    result = await DockerSandbox(image="img", client=client).run(
        ["pytest", "-q"], workdir=tmp_path, env={"A": "1"}, limits=LIMITS
    )

    options = client.options
    assert (result.exit_code, result.output) == (0, "ok\n")
    assert options["command"] == ["pytest", "-q"]
    assert options["mem_limit"] == options["memswap_limit"] == "300m"
    assert options["pids_limit"] == 50
    assert options["network_mode"] == "none"
    assert options["read_only"] is True
    assert options["tmpfs"] == {"/tmp": "rw,nosuid,nodev,size=9m"}
    assert options["cap_drop"] == ["ALL"]
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["user"] == "65534:65534"
    assert options["volumes"] == {str(tmp_path.resolve()): {"bind": "/workspace", "mode": "rw"}}
    assert options["working_dir"] == "/workspace"
    assert options["environment"]["A"] == "1"
    assert options["detach"] is True
    assert {u["Name"]: u["Hard"] for u in options["ulimits"]} == {"cpu": 7, "fsize": 2 << 20, "core": 0}
    assert client.container.removed


async def test_network_variant_uses_the_bridge(tmp_path: Path) -> None:
    client = FakeClient(FakeContainer(exit_code=0, chunks=[]))

    await DockerSandbox(client=client, network=True).run(["true"], workdir=tmp_path, env={}, limits=LIMITS)

    assert client.options["network_mode"] == "bridge"


async def test_overrun_is_killed_capped_and_removed(tmp_path: Path) -> None:
    container = FakeContainer(exit_code=None, chunks=[b"0123456", b"789abcdef"])
    short = Limits(wall_seconds=0.2, output_bytes=10)

    result = await DockerSandbox(client=FakeClient(container)).run(
        ["x"], workdir=tmp_path, env={}, limits=short
    )

    assert result.timed_out
    assert container.killed
    assert container.removed
    assert result.exit_code == 137
    assert result.output == "0123456789" + TRUNCATION_MARKER


async def test_cancel_kills_the_container(tmp_path: Path) -> None:
    container = FakeContainer(exit_code=None, chunks=[])
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, cancel.set)

    result = await DockerSandbox(client=FakeClient(container)).run(
        ["x"], workdir=tmp_path, env={}, limits=LIMITS, cancel=cancel
    )

    assert result.cancelled
    assert not result.timed_out
    assert container.killed
    assert container.removed
