"""bubblewrap sandbox: runs a repository's tests (code an LLM just wrote) with nothing of the host to take.

What the command sees, and why:

* **Filesystem, deny by default.** The root is bwrap's own tmpfs, made read-only by `--remount-ro /` as the
  last operation. Read-only binds bring in the system only (`/usr` and the `/bin`, `/lib*` links, `/etc`)
  plus the platform's interpreter prefixes (`sys.base_prefix`, `sys.prefix`) and whatever `readonly_paths`
  a run adds (the interpreter a project's environment was made with, its cache entry). Nothing
  else of the host exists inside: not `/root`, `/home`, `/run` (sockets such as docker.sock or PostgreSQL's),
  `/var`, `/mnt`, `/srv`, `/opt`, the service's data dir or the other runs' workspaces. `/root` is only an
  empty directory into which the interpreter prefix is re-bound when it lives there (pyenv).
* **Inside `/etc`**, `shadow`/`gshadow` are replaced by `/dev/null` and `ssh`/`ssl/private` by empty
  read-only tmpfs: nothing a test needs, and a second wall should the sandbox ever run as root
  (`SANDBOX_HOST_UID=0`).
* **Writable**: `/workspace` (the run's `workdir`, the cwd), `/tmp` and `/dev/shm`. With a root executor a
  test run's three share one tmpfs of `Limits.disk_mb` (the disk quota, `quota.py`), whose pages are also
  charged to the run's memory cgroup; the workspace is copied in and back out, so the host's runs directory
  never takes more than the quota from one run, and a run that fills it is reported as such. Otherwise
  (setup, or an executor that is not root) `/workspace` is a bind of `workdir` and `/tmp`, `/dev/shm` are
  private size-limited tmpfs. A dependency-setup sandbox may also be given `writable_paths` (a download
  cache kept across setups), bound read-write at their host paths.
* **Identity**: new PID, network, IPC, UTS and cgroup namespaces in a user namespace where the command is
  uid/gid 65534 and, on the host, the unprivileged `SANDBOX_HOST_UID` (65534 by default) even when the
  executor is root: `userns.py` says how. No capabilities, nested user namespaces disabled,
  `--new-session`, `--die-with-parent`, and the seccomp filter of `seccomp.py`. The workspace is lent to
  the host uid for the run.
* **No secrets in /proc**: PID 1 inside is bwrap, whose environment and command line any test can read, so
  bwrap starts with a PATH-only environment and gets its options (which name host paths) through
  `--args FD`; the command's own environment is exactly the `env` given to `run()` over a small default.
* **Limits**: memory and process count through a per-run cgroup (`cgroups.py`), joined by a tiny `sh`
  wrapper before it becomes the host uid and execs bwrap (`preexec_fn` is not thread-safe); CPU time, file
  size and core dumps by `ulimit` in that wrapper; wall clock, output cap and cancel by `run_captured`.
  Every run ends with the cgroup killed and removed, so nothing outlives it, double-forked daemons included.
* **Network**: none (a fresh network namespace has only its own loopback). `network=True`, for a
  dependency-setup step that must reach package registries, keeps that namespace and joins it to the host
  through pasta for one port only, the egress proxy's (`netns.py`, `egress.py`): HTTPS to public addresses,
  never the host's loopback or a private range. Without pasta, `network_fallback` decides: "refuse" (the
  default) gives setup no network at all, "host" shares the host's network namespace as the reference
  design did; both are logged once as degraded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import structlog

from service_feature.executor.sandbox import cgroups, egress, netns, quota
from service_feature.executor.sandbox.base import Limits, ProcessResult
from service_feature.executor.sandbox.process import run_captured
from service_feature.executor.sandbox.seccomp import compiled_filter
from service_feature.executor.sandbox.userns import (
    DEFAULT_HOST_UID,
    SANDBOX_ID,
    Identity,
    UserNamespaceError,
    identity_for,
)

WORKSPACE = "/workspace"
SANDBOX_TMP = "/tmp"  # noqa: S108 - the sandbox's private tmpfs, not the host's /tmp
MEMORY_LIMIT_MARKER = "\n[service-feature: the memory limit was reached and the sandbox was killed]\n"

_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# bwrap is PID 1 inside and its environment is readable there: it gets nothing but a PATH.
_LAUNCH_ENV = {"PATH": _SYSTEM_PATH}
_DEFAULT_ENV = {"PATH": _SYSTEM_PATH, "HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, "LANG": "C.UTF-8"}
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
_MASKED_FILES = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
_MASKED_DIRS = ("/etc/ssh", "/etc/ssl/private")
_PROBE_TIMEOUT_SECONDS = 10
NO_NETWORK_MARKER = (
    "\n[service-feature: setup ran without network: {why}; install pasta (Debian package passt), or set "
    "SANDBOX_SETUP_NETWORK_FALLBACK=host to share the host's network (unsafe)]\n"
)

Egress = Literal["none", "proxy", "host", "refused"]
NetworkFallback = Literal["refuse", "host"]

_log = structlog.get_logger()
_warned: set[str] = set()  # degradations already logged by this process


def _warn_once(event: str, **details: Any) -> None:
    """Log a degradation once per process (every setup builds a sandbox), not once per run."""
    key = f"{event}:{sorted(details.items())}"
    if key not in _warned:
        _warned.add(key)
        _log.warning(event, **details)


def interpreter_prefixes() -> tuple[Path, ...]:
    """The service's own Python (venv and base install), which tests are usually run with."""
    prefixes = {
        Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    return tuple(sorted(prefixes))


class BwrapSandbox:
    """The hardened default sandbox; see the module docstring for what it hides and limits."""

    name = "bwrap"

    def __init__(
        self,
        *,
        network: bool = False,
        readonly_paths: Sequence[Path] | None = None,
        cgroup_support: cgroups.CgroupSupport | None = None,
        bwrap: str = "bwrap",
        identity: Identity | None = None,
        writable_paths: Sequence[Path] = (),
        network_fallback: NetworkFallback = "refuse",
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        """`identity` defaults to `identity_for(DEFAULT_HOST_UID)`, which may raise UserNamespaceError.
        `allowed_hosts` (patterns) narrows what setup's proxy lets through; empty allows any public host."""
        self.network = network
        self._bwrap = shutil.which(bwrap) or bwrap
        self._readonly = tuple(readonly_paths) if readonly_paths is not None else interpreter_prefixes()
        self._writable = tuple(writable_paths)
        self._cgroups = cgroup_support if cgroup_support is not None else cgroups.probe()
        self._identity = identity if identity is not None else identity_for(DEFAULT_HOST_UID)
        self._fallback: NetworkFallback = network_fallback
        self._allowed_hosts = tuple(allowed_hosts)
        self.egress = self._choose_egress()
        self._system = tuple(self._system_args())

    def with_readonly(self, paths: Sequence[Path]) -> BwrapSandbox:
        """This sandbox plus `paths` read-only (binds are fixed at construction; nothing is probed)."""
        return self._extended(readonly=paths)

    def with_writable(self, paths: Sequence[Path]) -> BwrapSandbox:
        """This sandbox plus `paths` (existing directories) writable: for setup's download cache only."""
        return self._extended(writable=paths)

    def _extended(self, *, readonly: Sequence[Path] = (), writable: Sequence[Path] = ()) -> BwrapSandbox:
        return BwrapSandbox(
            network=self.network,
            readonly_paths=(*self._readonly, *readonly),
            cgroup_support=self._cgroups,
            bwrap=self._bwrap,
            identity=self._identity,
            writable_paths=(*self._writable, *writable),
            network_fallback=self._fallback,
            allowed_hosts=self._allowed_hosts,
        )

    def _choose_egress(self) -> Egress:
        """How a networked sandbox reaches out: through pasta and the proxy, or the logged fallback."""
        if not self.network:
            return "none"
        if netns.pasta_path() is not None:
            return "proxy"
        consequence = (
            "setup shares the HOST's network: repository code run by setup can reach the host's loopback "
            "services and private network"
            if self._fallback == "host"
            else "setup runs WITHOUT network: dependencies that need a download fail to install"
        )
        _warn_once(
            "sandbox.setup_network_degraded",
            missing="pasta (Debian package passt)",
            fallback=self._fallback,
            consequence=consequence,
        )
        return "host" if self._fallback == "host" else "refused"

    @property
    def disk_quota(self) -> bool:
        """Whether test runs get the tmpfs quota: it needs a root executor, and setup keeps the host disk
        (environments can be gigabytes; they are cached, and bounded by time and file size)."""
        return not self.network and os.geteuid() == 0

    @staticmethod
    def probe_error(bwrap: str = "bwrap", host_uid: int = DEFAULT_HOST_UID) -> str | None:
        """None when bwrap is installed and can build this sandbox's namespaces, as `host_uid`, here."""
        path = shutil.which(bwrap)
        if path is None:
            return f"{bwrap} is not on PATH"
        try:
            identity = identity_for(host_uid)
        except UserNamespaceError as error:
            return (
                f"no unprivileged identity for the sandbox (SANDBOX_HOST_UID={host_uid}): {error}; "
                "SANDBOX_HOST_UID=0 runs sandboxes as host root instead (logged as degraded)"
            )
        probe = [*identity.launch_prefix(), path, *_namespace_options(identity, network=False)]
        try:
            done = subprocess.run(
                [*probe, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"],
                capture_output=True,
                timeout=_PROBE_TIMEOUT_SECONDS,
                env=_LAUNCH_ENV,
                check=False,
                pass_fds=_passed(identity),
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{path} could not be started: {error}"
        if done.returncode != 0:
            return f"{path} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}"
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "network": self.network,
            "uid": SANDBOX_ID,
            "host_uid": self._identity.host_uid,
            "readonly_paths": [str(p) for p in self._readonly],
            "writable_paths": [str(p) for p in self._writable],
            "egress": self.egress,
            "disk_quota": self.disk_quota,
            "limits": self._cgroups.describe(),
            "degraded": self._degraded(),
        }

    def _degraded(self) -> list[str]:
        degraded = [*self._cgroups.missing, *(["host-root"] if self._identity.privileged else [])]
        if self.egress in ("host", "refused"):
            degraded.append(f"setup-network-{self.egress}")
        if not self.network and not self.disk_quota:
            degraded.append("disk-quota")
        return degraded

    async def run(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        cancel: asyncio.Event | None = None,
    ) -> ProcessResult:
        proxy_port = egress.shared_proxy(self._allowed_hosts).port if self.egress == "proxy" else None
        variables = {**_DEFAULT_ENV, **env}
        if proxy_port is not None:
            variables |= netns.proxy_environment(proxy_port)
        await asyncio.to_thread(self._identity.lend, workdir)
        for path in self._writable:
            self._identity.lend_directory(path)
        run_cgroup = self._cgroups.create(limits)
        fds: list[int] = []
        scratch: quota.Scratch | None = None
        try:
            if self.disk_quota and limits.disk_mb > 0:
                scratch = quota.make_scratch()
            options = self._options(workdir, variables, limits, scratch=scratch)
            fds.append(_memfd("sf-bwrap-args", b"".join(arg.encode() + b"\0" for arg in options)))
            fds.append(_memfd("sf-seccomp", compiled_filter()))
            # pasta's log is not passed down: the wrapper opens it through this process's /proc entry.
            log_fd = _memfd(netns.NETWORK_LOG_FD_NAME, b"") if proxy_port is not None else None
            fds += [log_fd] if log_fd is not None else []
            wrapper = self._wrapper(
                run_cgroup,
                limits,
                fds=fds[:2],
                scratch=scratch,
                workdir=workdir,
                network=(proxy_port, log_fd),
            )
            result = await run_captured(
                [*wrapper, *argv],
                cwd=Path("/"),
                env=_LAUNCH_ENV,
                limits=limits,
                cancel=cancel,
                pass_fds=[*fds[:2], *_passed(self._identity)],
            )
            quota_hit = scratch is not None and quota.exceeded(scratch, result.output)
            network_failure = netns.failure(log_fd) if log_fd is not None else None
        finally:
            for fd in fds:
                os.close(fd)
            oom_killed = await asyncio.to_thread(run_cgroup.destroy)
            if scratch is not None:
                await asyncio.to_thread(quota.remove_scratch, scratch)
        return self._reported(
            result, limits, oom_killed=oom_killed, quota_hit=quota_hit, network_failure=network_failure
        )

    def _reported(
        self,
        result: ProcessResult,
        limits: Limits,
        *,
        oom_killed: bool,
        quota_hit: bool,
        network_failure: str | None,
    ) -> ProcessResult:
        """The result with the limits it ran into said in its output (and flagged, for the disk quota)."""
        if oom_killed:
            _log.info("sandbox.memory_limit_reached", memory_mb=limits.memory_mb)
            result = dataclasses.replace(result, output=result.output + MEMORY_LIMIT_MARKER)
        if quota_hit:
            marker = quota.QUOTA_MARKER.format(mb=limits.disk_mb)
            result = dataclasses.replace(result, output=result.output + marker, disk_quota_exceeded=True)
        why = network_failure or ("pasta is not installed" if self.egress == "refused" else None)
        if why is not None and result.exit_code != 0:
            result = dataclasses.replace(result, output=result.output + NO_NETWORK_MARKER.format(why=why))
        return result

    def _wrapper(
        self,
        run_cgroup: cgroups.RunCgroup,
        limits: Limits,
        *,
        fds: Sequence[int],
        scratch: quota.Scratch | None,
        workdir: Path,
        network: tuple[int | None, int | None],
    ) -> list[str]:
        """`sh -c` that joins the cgroups, sets rlimits (hard too), becomes the host uid and execs bwrap (in
        the quota's mount namespace or pasta's network namespace when there is one); the command follows.
        `fds`: bwrap's arguments and seccomp filter; `network`: the proxy's port and pasta's log, if any."""
        args_fd, seccomp_fd = fds
        proxy_port, network_log_fd = network
        bwrap = shlex.join([*self._identity.launch_prefix(), self._bwrap])
        run_bwrap = f"{bwrap} --args {args_fd} --seccomp {seccomp_fd} --"
        steps = [f"echo $$ > {shlex.quote(str(procs))}" for procs in run_cgroup.procs_files]
        steps += [
            "ulimit -c 0",
            f"ulimit -t {limits.cpu_seconds}",
            f"ulimit -f {limits.file_size_mb * 2048}",  # 512-byte blocks, as POSIX specifies for sh
        ]
        if proxy_port is not None and network_log_fd is not None:
            pasta = netns.pasta_command(netns.pasta_path() or "pasta", proxy_port, as_root=os.geteuid() == 0)
            log = Path("/proc", str(os.getpid()), "fd", str(network_log_fd))
            steps.append(f'exec {pasta} {run_bwrap} "$@" {netns.redirections(log)}')
        elif scratch is None:
            steps.append(f'exec {run_bwrap} "$@"')
        else:
            steps.append(
                quota.wrapped(
                    run_bwrap,
                    scratch=scratch,
                    identity=self._identity,
                    disk_mb=limits.disk_mb,
                    workdir=workdir,
                )
            )
        return ["/bin/sh", "-c", " && ".join(steps), "sf-sandbox"]

    def _options(
        self,
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        *,
        scratch: quota.Scratch | None = None,
    ) -> list[str]:
        # With the proxy, bwrap joins pasta's namespace; only "refused" (or no network) makes a bare one.
        options = _namespace_options(self._identity, network=self.egress in ("host", "proxy"))
        options += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        options += ["--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID), "--hostname", "sandbox"]
        tmp_bytes = str(limits.tmp_size_mb * 1024 * 1024)
        # The private /tmp first, so that read-only binds of paths under the host's /tmp (a virtualenv or a
        # dependency cache there) land on top of it instead of being hidden by it; /dev/shm after /dev.
        if scratch is None:
            options += ["--size", tmp_bytes, "--tmpfs", SANDBOX_TMP, *self._system]
            options += ["--size", tmp_bytes, "--tmpfs", "/dev/shm"]  # noqa: S108 - a fresh tmpfs, private to this sandbox
            workspace = str(workdir.resolve(strict=True))
        else:  # the quota's tmpfs, which exists only in the wrapper's mount namespace
            options += ["--bind", str(scratch.tmp), SANDBOX_TMP, *self._system]
            options += ["--bind", str(scratch.shm), "/dev/shm"]  # noqa: S108 - on the run's own tmpfs
            workspace = str(scratch.workspace)
        for path in self._writable:
            options += ["--bind", str(path.resolve(strict=True)), str(path)]
        options += ["--bind", workspace, WORKSPACE, "--chdir", WORKSPACE, "--clearenv"]
        for key, value in env.items():
            options += ["--setenv", key, value]
        return [*options, "--remount-ro", "/"]

    def _system_args(self) -> Iterator[str]:
        """The read-only view of the host, computed once: system dirs, masks, interpreter prefixes."""
        for name in _SYSTEM_DIRS:
            host = Path("/", name)
            if host.is_symlink():
                yield from ("--symlink", os.readlink(host), str(host))
            elif host.is_dir():
                yield from ("--ro-bind", str(host), str(host))
        yield from ("--proc", "/proc", "--dev", "/dev", "--dir", "/root")
        yield from ("--symlink", "../tmp", "/var/tmp")  # noqa: S108 - points at the private /tmp
        for masked in _MASKED_FILES:
            if Path(masked).is_file():
                yield from ("--ro-bind", "/dev/null", masked)
        for masked in _MASKED_DIRS:
            if Path(masked).is_dir():
                yield from ("--perms", "0555", "--tmpfs", masked, "--remount-ro", masked)
        resolver = Path("/etc/resolv.conf").resolve()  # often a link into /run, which is not there
        extra = (resolver,) if self.egress == "host" and resolver.is_file() else ()
        for path in (*self._readonly, *extra):
            if path.exists() and not any(path.is_relative_to(Path("/", name)) for name in _SYSTEM_DIRS):
                yield from ("--ro-bind", str(path), str(path))


def _namespace_options(identity: Identity, *, network: bool) -> list[str]:
    """Every namespace but the network's when `network`; nested user namespaces impossible either way."""
    if identity.userns_fd is None:
        return ["--unshare-all", "--unshare-user", "--disable-userns", *(["--share-net"] if network else [])]
    options = ["--userns", str(identity.userns_fd), "--unshare-ipc", "--unshare-pid", "--unshare-uts"]
    options += ["--unshare-cgroup-try", *([] if network else ["--unshare-net"])]
    return [*options, "--assert-userns-disabled"]


def _passed(identity: Identity) -> tuple[int, ...]:
    return () if identity.userns_fd is None else (identity.userns_fd,)


def _memfd(name: str, content: bytes) -> int:
    """An anonymous file holding content, rewound, for bwrap to read through an inherited descriptor."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
