"""Docker sandbox, for hosts where bubblewrap cannot run but a Docker engine answers.

One throw-away container per run, as locked down as the engine allows: no network, read-only root with a
size-limited tmpfs /tmp, all capabilities dropped, `no-new-privileges`, a non-root user, memory without swap
(`memswap_limit == mem_limit`), CPU and pids limits, CPU-time/file-size/core rlimits. The workspace is
bind-mounted at /workspace; it must be writable by the container user (65534 by default).

The SDK's `containers.run(detach=False)` blocks without a timeout and reads logs unbounded, so the container
is started detached, waited for with the wall-clock limit (or until cancelled), killed when it overruns, its
logs read up to the output cap, and always removed. Each blocking SDK call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker  # type: ignore[import-untyped]
from docker.types import Ulimit  # type: ignore[import-untyped]

from service_feature.executor.sandbox.base import TRUNCATION_MARKER, Limits, ProcessResult
from service_feature.executor.sandbox.process import wait_or_stop

DEFAULT_IMAGE = "python:3.11-slim"
WORKSPACE = "/workspace"
SANDBOX_TMP = "/tmp"  # noqa: S108 - the container's private tmpfs, not the host's /tmp
_PING_TIMEOUT_SECONDS = 3
_WAIT_GRACE_SECONDS = 30


class DockerSandbox:
    """A container per run through the Docker SDK; see the module docstring for the settings used."""

    name = "docker"

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        network: bool = False,
        user: str = "65534:65534",
        cpus: float = 1.0,
        client: Any = None,
    ) -> None:
        self.image = image
        self.network = network
        self.user = user
        self.cpus = cpus
        self._client = client if client is not None else docker.from_env()

    @staticmethod
    def probe_error() -> str | None:
        """None when a Docker engine answers a ping, else why not."""
        try:
            docker.from_env(timeout=_PING_TIMEOUT_SECONDS).ping()
        except Exception as error:  # the SDK raises DockerException, requests' and OS errors alike
            return f"{type(error).__name__}: {error}"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "network": self.network,
            "user": self.user,
            "degraded": [],
        }

    async def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        cancel: asyncio.Event | None = None,
    ) -> ProcessResult:
        started = time.monotonic()
        container = await asyncio.to_thread(self._start, argv, workdir, env, limits)
        try:
            waiter = asyncio.ensure_future(
                asyncio.to_thread(container.wait, timeout=limits.wall_seconds + _WAIT_GRACE_SECONDS)
            )
            timed_out, cancelled = await wait_or_stop(waiter, limits.wall_seconds, cancel)
            if timed_out or cancelled:
                with contextlib.suppress(docker.errors.APIError):
                    await asyncio.to_thread(container.kill)
            exit_code: int | None = None
            with contextlib.suppress(Exception):  # a wait that outlived its own timeout has no status
                exit_code = int((await waiter)["StatusCode"])
            output, truncated = await asyncio.to_thread(_read_logs, container, limits.output_bytes)
        finally:
            with contextlib.suppress(docker.errors.APIError):
                await asyncio.to_thread(container.remove, force=True)
        return ProcessResult(
            exit_code=exit_code,
            output=output + (TRUNCATION_MARKER if truncated else ""),
            duration_seconds=time.monotonic() - started,
            timed_out=timed_out,
            cancelled=cancelled,
            truncated=truncated,
        )

    def _start(self, argv: Sequence[str], workdir: Path, env: Mapping[str, str], limits: Limits) -> Any:
        memory = f"{limits.memory_mb}m"
        return self._client.containers.run(
            self.image,
            command=list(argv),
            detach=True,
            working_dir=WORKSPACE,
            environment={"HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, **env},
            user=self.user,
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(self.cpus * 1_000_000_000),
            pids_limit=limits.pids,
            network_mode="bridge" if self.network else "none",
            read_only=True,
            tmpfs={SANDBOX_TMP: f"rw,nosuid,nodev,size={limits.tmp_size_mb}m"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            volumes={str(workdir.resolve(strict=True)): {"bind": WORKSPACE, "mode": "rw"}},
            ulimits=[
                Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds),
                Ulimit(name="fsize", soft=limits.file_size_mb << 20, hard=limits.file_size_mb << 20),
                Ulimit(name="core", soft=0, hard=0),
            ],
            labels={"service-feature.sandbox": "test-run"},
        )


def _read_logs(container: Any, limit: int) -> tuple[str, bool]:
    """At most `limit` bytes of the container's combined output, and whether there was more."""
    captured = bytearray()
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
        captured.extend(chunk)
        if len(captured) > limit:
            return captured[:limit].decode("utf-8", errors="replace"), True
    return captured.decode("utf-8", errors="replace"), False
