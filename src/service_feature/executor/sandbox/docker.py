"""Docker sandbox, for hosts where bubblewrap cannot run but a Docker engine answers.

One throw-away container per run, as locked down as the engine allows: no network, read-only root with a
size-limited tmpfs /tmp, all capabilities dropped, `no-new-privileges`, the engine's default seccomp
profile, a non-root user, memory without swap (`memswap_limit == mem_limit`), CPU and pids limits,
CPU-time/file-size/core rlimits. The workspace is bind-mounted at /workspace.

What the command runs with, and why:

* **The image's system, the host's toolchains.** The image provides `/usr`, `/bin`, `/lib*` and `/etc`;
  everything a run adds with `with_readonly` (the interpreter a project's environment was made with when it
  lives outside the system dirs, uv's directory, the cache entry of the environment) and the image lacks
  (asked once per path) is bound read-only at its host path, as bubblewrap binds it, so the links setup
  baked in (`.service-feature-env -> <entry>`, `venv/bin/python -> <interpreter>`) resolve inside the
  container too. Host paths under the system dirs
  are not bound (they would replace the image's own): an interpreter or toolchain there must exist in the
  image at the same path. `/root` is covered by an empty read-only stand-in when something under it is
  bound (a pyenv interpreter): the image's `/root` is private to root, the container user could not reach it.
* **Identity.** A root executor runs the container as 65534 and lends it the workspace (and setup's
  writable download cache) by changing their owner, never following links; an executor that is not root
  runs the container as itself.
* **Network.** None for tests. A setup sandbox (`network=True`) uses the engine's `bridge` network; an engine
  without one (`dockerd --bridge=none`) gets the host's network when `network_fallback="host"` (the
  registries are reachable, but so are the host's loopback services: logged as degraded), or none. Setup
  also sees the host's `/etc/ssl/certs` read-only, so it trusts the certificate authorities the host does.
* **A command the image cannot run** (no such image, no such executable) is a result, not an exception: exit
  127 and a message naming the image and the command, so the runner reports it as a failed setup or test run
  instead of retrying an internal error.

The SDK's `containers.run(detach=False)` blocks without a timeout and reads logs unbounded, so the container
is started detached, waited for with the wall-clock limit (or until cancelled), killed when it overruns, its
logs read up to the output cap, and always removed. Each blocking SDK call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
import functools
import os
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import docker  # type: ignore[import-untyped]
import structlog
from docker.types import Ulimit  # type: ignore[import-untyped]

from service_feature.executor.sandbox.base import TRUNCATION_MARKER, Limits, ProcessResult
from service_feature.executor.sandbox.process import wait_or_stop

DEFAULT_IMAGE = "python:3.11-slim"
WORKSPACE = "/workspace"
SANDBOX_TMP = "/tmp"  # noqa: S108 - the container's private tmpfs, not the host's /tmp
SANDBOX_ID = 65534
CANNOT_RUN_EXIT = 127  # the shell's "command not found"
MEMORY_LIMIT_MARKER = "\n[service-feature: the memory limit was reached and the container was killed]\n"
RUN_LABEL = "service-feature.run"
# The image's own: a host path under one of these is never bound over it.
_IMAGE_DIRS = tuple(Path("/", name) for name in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "etc"))
_PRIVATE_IN_IMAGE = Path("/root")
# Setup trusts what the host trusts (a company CA, a TLS-inspecting proxy's): SSL_CERT_FILE, which setup
# passes through, names a bundle here, and the image's own would not verify the registries.
_HOST_TRUST = Path("/etc/ssl/certs")
_PING_TIMEOUT_SECONDS = 3
_WAIT_GRACE_SECONDS = 30

NetworkFallback = Literal["refuse", "host"]
_log = structlog.get_logger()


class DockerSandbox:
    """A container per run through the Docker SDK; see the module docstring for the settings used."""

    name = "docker"

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        network: bool = False,
        user: str | None = None,
        cpus: float = 1.0,
        client: Any = None,
        readonly_paths: Sequence[Path] = (),
        writable_paths: Sequence[Path] = (),
        network_fallback: NetworkFallback | None = None,
    ) -> None:
        """`network_fallback` None uses the `bridge` network for setup without asking the engine; set, the
        engine is asked once whether it has one, and the fallback decides when it has not."""
        self.image = image
        self.network = network
        self.user = user if user is not None else _default_user()
        self.cpus = cpus
        self._client = client if client is not None else docker.from_env()
        self._readonly = tuple(readonly_paths)
        self._writable = tuple(writable_paths)
        self._fallback = network_fallback
        # Shared with the copies `with_readonly` makes (one per run): the engine is asked once.
        self._network_decision: dict[str, str] = {}
        self._image_paths: dict[Path, bool] = {}  # whether the image has a path itself (`_in_image`)

    @staticmethod
    def probe_error() -> str | None:
        """None when a Docker engine answers a ping, else why not."""
        try:
            docker.from_env(timeout=_PING_TIMEOUT_SECONDS).ping()
        except Exception as error:  # the SDK raises DockerException, requests' and OS errors alike
            return f"{type(error).__name__}: {error}"
        return None

    def with_readonly(self, paths: Sequence[Path]) -> DockerSandbox:
        """This sandbox plus `paths` bound read-only at their host paths (system dirs excepted)."""
        return self._extended(readonly=paths)

    def with_writable(self, paths: Sequence[Path]) -> DockerSandbox:
        """This sandbox plus `paths` (existing directories) writable: for setup's download cache only."""
        return self._extended(writable=paths)

    def _extended(self, *, readonly: Sequence[Path] = (), writable: Sequence[Path] = ()) -> DockerSandbox:
        extended = copy.copy(self)  # shares the client and the network decision
        extended._readonly = (*self._readonly, *readonly)
        extended._writable = (*self._writable, *writable)
        return extended

    def describe(self) -> dict[str, Any]:
        """Without asking the engine: a setup sandbox's network is decided (and logged) at its first run."""
        mode = self._network_decision.get("mode", "undecided") if self.network else "none"
        return {
            "name": self.name,
            "image": self.image,
            "network": self.network,
            "network_mode": mode,
            "user": self.user,
            "degraded": self._degraded(mode),
        }

    def _degraded(self, mode: str) -> list[str]:
        degraded = ["disk-quota"]  # the workspace is a bind of the host's disk, bounded per file only
        if self.network and mode in ("host", "none"):
            degraded.append(f"setup-network-{'host' if mode == 'host' else 'refused'}")
        return degraded

    def network_mode(self) -> str:
        """The container's network: none for tests; for setup, see the module docstring."""
        if not self.network:
            return "none"
        if "mode" not in self._network_decision:
            self._network_decision["mode"] = self._setup_network_mode()
        return self._network_decision["mode"]

    def _setup_network_mode(self) -> str:
        if self._fallback is None or _has_bridge(self._client):
            return "bridge"
        mode = "host" if self._fallback == "host" else "none"
        consequence = (
            "setup shares the HOST's network: repository code run by setup can reach the host's loopback "
            "services and private network"
            if mode == "host"
            else "setup runs WITHOUT network: dependencies that need a download fail to install"
        )
        _log.warning(
            "sandbox.setup_network_degraded",
            missing="a bridge network on the Docker engine",
            fallback=self._fallback,
            consequence=consequence,
        )
        return mode

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
        await asyncio.to_thread(self._lend, workdir)
        run_id = uuid.uuid4().hex
        try:
            container = await asyncio.to_thread(self._start, argv, workdir, env, limits, run_id)
        except docker.errors.DockerException as error:
            if not _cannot_run(error):
                raise
            await asyncio.to_thread(self._remove_created, run_id)
            return self._not_started(argv, error, time.monotonic() - started)
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
            oom_killed = await asyncio.to_thread(_oom_killed, container)
        finally:
            with contextlib.suppress(docker.errors.APIError):
                await asyncio.to_thread(container.remove, force=True)
        if oom_killed:
            _log.info("sandbox.memory_limit_reached", memory_mb=limits.memory_mb)
        return ProcessResult(
            exit_code=exit_code,
            output=output
            + (TRUNCATION_MARKER if truncated else "")
            + (MEMORY_LIMIT_MARKER if oom_killed else ""),
            duration_seconds=time.monotonic() - started,
            timed_out=timed_out,
            cancelled=cancelled,
            truncated=truncated,
        )

    def _not_started(self, argv: Sequence[str], error: Exception, seconds: float) -> ProcessResult:
        """The result of a container that could not start: what to fix, in the run's output."""
        reason = getattr(error, "explanation", None) or str(error)
        message = (
            f"[service-feature: the Docker image {self.image!r} cannot run `{shlex.join(argv)}`: {reason}. "
            "Use an image that has this command (SANDBOX_DOCKER_IMAGE), or a toolchain the image provides.]\n"
        )
        _log.warning("sandbox.docker_cannot_run", image=self.image, command=shlex.join(argv), reason=reason)
        return ProcessResult(exit_code=CANNOT_RUN_EXIT, output=message, duration_seconds=seconds)

    def _remove_created(self, run_id: str) -> None:
        """The container `containers.run` created before its start failed, if any."""
        with contextlib.suppress(docker.errors.DockerException):
            for container in self._client.containers.list(
                all=True, filters={"label": f"{RUN_LABEL}={run_id}"}
            ):
                container.remove(force=True)

    def _lend(self, workdir: Path) -> None:
        """Give the workspace (and the writable binds) to the container user when it is not this process's."""
        uid, gid = _ids(self.user)
        if os.geteuid() != 0 or (uid, gid) == (os.geteuid(), os.getegid()):
            return
        os.chown(workdir, uid, gid, follow_symlinks=False)
        for _, dirs, files, dir_fd in os.fwalk(workdir, follow_symlinks=False):
            for name in (*dirs, *files):
                os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        for path in self._writable:
            os.chown(path, uid, gid, follow_symlinks=False)

    def _start(
        self, argv: Sequence[str], workdir: Path, env: Mapping[str, str], limits: Limits, run_id: str
    ) -> Any:
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
            network_mode=self.network_mode(),
            read_only=True,
            tmpfs=self._tmpfs(limits),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            volumes=self._volumes(workdir),
            ulimits=[
                Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds),
                Ulimit(name="fsize", soft=limits.file_size_mb << 20, hard=limits.file_size_mb << 20),
                Ulimit(name="core", soft=0, hard=0),
            ],
            labels={"service-feature.sandbox": "test-run", RUN_LABEL: run_id},
        )

    def _bound(self) -> list[tuple[Path, str]]:
        """(host path, mode) of the extra binds: existing paths outside the image's system dirs, and for
        read-only ones, only those the image lacks."""
        bound: dict[Path, str] = {}
        for paths, mode in ((self._readonly, "ro"), (self._writable, "rw")):
            for path in paths:
                resolved = path.resolve()
                if resolved.exists() and not any(resolved.is_relative_to(d) for d in _IMAGE_DIRS):
                    bound[resolved] = mode
        provided = self._in_image([path for path, mode in bound.items() if mode == "ro"])
        return sorted((path, mode) for path, mode in bound.items() if path not in provided)

    def _in_image(self, paths: Sequence[Path]) -> set[Path]:
        """Which of `paths` the image itself has, as the container user sees them. The executor may run in a
        container of the sandbox's own image (compose): its uv and interpreter are then the image's, and a
        bind of the same path would be resolved on the engine's host, where they are not. Asked once per
        path, several paths per container; an image that cannot answer has none of them."""
        unknown = [path for path in paths if path not in self._image_paths]
        if unknown:
            present = set(self._probe_image(unknown))
            self._image_paths.update({path: str(path) in present for path in unknown})
        return {path for path in paths if self._image_paths[path]}

    def _probe_image(self, paths: Sequence[Path]) -> list[str]:
        script = 'for p; do [ -e "$p" ] && echo "$p"; done; true'
        try:
            output = self._client.containers.run(
                self.image,
                command=["sh", "-c", script, "sh", *map(str, paths)],
                remove=True,
                user=self.user,
                network_mode="none",
                read_only=True,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                labels={"service-feature.sandbox": "image-probe"},
            )
        except docker.errors.DockerException:
            return []
        return bytes(output).decode(errors="replace").splitlines()

    def _volumes(self, workdir: Path) -> dict[str, dict[str, str]]:
        bound = self._bound()
        volumes = {str(path): {"bind": str(path), "mode": mode} for path, mode in bound}
        private = [path for path, _ in bound if path.is_relative_to(_PRIVATE_IN_IMAGE)]
        if private:
            volumes[str(_stand_in(private))] = {"bind": str(_PRIVATE_IN_IMAGE), "mode": "ro"}
        if self.network and _HOST_TRUST.is_dir():
            volumes[str(_HOST_TRUST)] = {"bind": str(_HOST_TRUST), "mode": "ro"}
        volumes[str(workdir.resolve(strict=True))] = {"bind": WORKSPACE, "mode": "rw"}
        return volumes

    def _tmpfs(self, limits: Limits) -> dict[str, str]:
        return {SANDBOX_TMP: f"rw,nosuid,nodev,size={limits.tmp_size_mb}m"}


@functools.cache
def _stand_in_root() -> Path:
    """An empty, world-readable directory of this process's, bound read-only over the image's `/root`."""
    path = Path(tempfile.mkdtemp(prefix="sf-docker-root-"))
    path.chmod(0o755)
    atexit.register(shutil.rmtree, path, True)
    return path


def _stand_in(paths: Sequence[Path]) -> Path:
    """The stand-in for `/root`, with the mount points of `paths` made in advance: it is bound read-only, so
    the engine could not make them itself. (A tmpfs would copy the image's `/root` mode, 0700, up.)"""
    root = _stand_in_root()
    for path in paths:
        (root / path.relative_to(_PRIVATE_IN_IMAGE)).mkdir(mode=0o755, parents=True, exist_ok=True)
    return root


def _default_user() -> str:
    """65534 for a root executor (which lends it the workspace), else the executor's own ids."""
    if os.geteuid() == 0:
        return f"{SANDBOX_ID}:{SANDBOX_ID}"
    return f"{os.geteuid()}:{os.getegid()}"


def _ids(user: str) -> tuple[int, int]:
    uid, _, gid = user.partition(":")
    return int(uid), int(gid or uid)


def _has_bridge(client: Any) -> bool:
    return bool(client.networks.list(names=["bridge"]))


def _cannot_run(error: Exception) -> bool:
    """Whether the engine refused the container itself (no image, no executable), not failed to answer."""
    if isinstance(error, docker.errors.ImageNotFound):
        return True
    if not isinstance(error, docker.errors.APIError):
        return False
    response = getattr(error, "response", None)
    if "/images/create" in str(getattr(response, "url", "")):
        return True  # the image is not on the engine and pulling it failed
    return getattr(response, "status_code", None) in (400, 404, 500) and _about_start(error)


def _about_start(error: Exception) -> bool:
    text = str(getattr(error, "explanation", "") or error).lower()
    return any(
        phrase in text
        for phrase in ("no such file", "not found", "executable file", "exec format", "permission denied")
    )


def _oom_killed(container: Any) -> bool:
    """Whether the engine killed the container for its memory limit."""
    try:
        container.reload()
        return bool(container.attrs["State"]["OOMKilled"])
    except (AttributeError, KeyError, TypeError, docker.errors.APIError):
        return False


def _read_logs(container: Any, limit: int) -> tuple[str, bool]:
    """At most `limit` bytes of the container's combined output, and whether there was more."""
    captured = bytearray()
    for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=False):
        captured.extend(chunk)
        if len(captured) > limit:
            return captured[:limit].decode("utf-8", errors="replace"), True
    return captured.decode("utf-8", errors="replace"), False
