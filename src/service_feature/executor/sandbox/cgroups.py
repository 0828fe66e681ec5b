"""Per-run cgroups: the memory and pids limits, and a kill that leaves no survivor.

rlimits cannot do this job: RLIMIT_NPROC does not bind processes that map to host root, RLIMIT_AS breaks
runtimes that reserve address space, and neither can kill a double-forked daemon. A cgroup per run can.

Machines differ (pure v2, v1, or hybrid like the reference host: v1 `memory`/`pids`, v2 without controllers
but with `cgroup.kill`), so `probe()` looks at what is mounted and *writable* once at start-up, by creating a
probe child next to where the runs will go. Run cgroups are children of the service's own cgroup in each
hierarchy, so the limits of whoever runs the service still apply on top. A missing controller is not fatal,
but it is logged as a warning and reported by `CgroupSupport.missing`, never silently ignored.

On pure v2 a controller is usable only if the service's own cgroup delegates it (`cgroup.subtree_control`);
enabling that is the deployment's job (systemd `Delegate=yes`, a container's own cgroup namespace).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog

from service_feature.executor.sandbox.base import Limits

_log = structlog.get_logger()

_RUN_PREFIX = "sf-run-"  # + owner pid + random: a restarted service removes what a dead one left
_KILL_DEADLINE_SECONDS = 5.0
_POLL_SECONDS = 0.005


@dataclass(frozen=True)
class Controller:
    """Where one controller's run cgroups are created, and which cgroup version governs its files."""

    parent: Path
    version: int


@dataclass(frozen=True)
class CgroupSupport:
    """What this machine lets the service limit and kill; `probe()` finds it."""

    memory: Controller | None
    pids: Controller | None
    kill_parent: Path | None  # a v2 parent whose children have `cgroup.kill`

    @property
    def missing(self) -> tuple[str, ...]:
        absent = {"memory": self.memory, "pids": self.pids, "cgroup.kill": self.kill_parent}
        return tuple(name for name, found in absent.items() if found is None)

    def describe(self) -> dict[str, str]:
        def show(controller: Controller | None) -> str:
            return f"cgroup v{controller.version} at {controller.parent}" if controller else "MISSING"

        return {
            "memory": show(self.memory),
            "pids": show(self.pids),
            "kill": f"cgroup.kill at {self.kill_parent}"
            if self.kill_parent
            else "SIGKILL every pid in the cgroups",
        }

    def create(self, limits: Limits) -> RunCgroup:
        """Make this run's cgroups with the limits written; the caller joins them and must `destroy()`."""
        name = f"{_RUN_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        parents = {c.parent for c in (self.memory, self.pids) if c} | (
            {self.kill_parent} if self.kill_parent else set()
        )
        run = RunCgroup(
            dirs=tuple(sorted(parent / name for parent in parents)),
            memory=_child(self.memory, name),
            pids=_child(self.pids, name),
            kill_file=self.kill_parent / name / "cgroup.kill" if self.kill_parent else None,
        )
        try:
            for directory in run.dirs:
                directory.mkdir()
            run.write_limits(limits)
        except OSError:
            run.remove()
            raise
        return run


def _child(controller: Controller | None, name: str) -> Controller | None:
    return Controller(controller.parent / name, controller.version) if controller else None


@dataclass(frozen=True)
class RunCgroup:
    """The cgroups of one run: one directory per hierarchy in use."""

    dirs: tuple[Path, ...]
    memory: Controller | None
    pids: Controller | None
    kill_file: Path | None

    @property
    def procs_files(self) -> list[Path]:
        return [directory / "cgroup.procs" for directory in self.dirs]

    def write_limits(self, limits: Limits) -> None:
        memory_bytes = str(limits.memory_mb * 1024 * 1024)
        if self.memory and self.memory.version == 1:
            (self.memory.parent / "memory.limit_in_bytes").write_text(memory_bytes)
            _write_if_present(self.memory.parent / "memory.memsw.limit_in_bytes", memory_bytes)  # no swap
        elif self.memory:
            (self.memory.parent / "memory.max").write_text(memory_bytes)
            _write_if_present(self.memory.parent / "memory.swap.max", "0")
        if self.pids:
            (self.pids.parent / "pids.max").write_text(str(limits.pids))

    def destroy(self) -> bool:
        """Kill every process of the run, remove the cgroups; True when the memory limit killed something."""
        self.kill_all()
        oom = self.oom_killed()
        self.remove()
        return oom

    def kill_all(self) -> None:
        if self.kill_file:
            with contextlib.suppress(OSError):
                self.kill_file.write_text("1")
        deadline = time.monotonic() + _KILL_DEADLINE_SECONDS
        # Also the fallback without cgroup.kill: repeat until empty, so children forked meanwhile die too.
        while pids := self._pids():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                _log.error(
                    "sandbox.cgroup_kill_incomplete",
                    survivors=sorted(pids),
                    cgroups=[str(d) for d in self.dirs],
                )
                return
            time.sleep(_POLL_SECONDS)

    def oom_killed(self) -> bool:
        if not self.memory:
            return False
        events = "memory.oom_control" if self.memory.version == 1 else "memory.events"
        with contextlib.suppress(OSError):
            for line in (self.memory.parent / events).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        return False

    def remove(self) -> None:
        deadline = time.monotonic() + _KILL_DEADLINE_SECONDS
        for directory in self.dirs:
            while directory.exists():
                try:
                    directory.rmdir()
                except OSError as error:  # EBUSY while the last tasks finish exiting
                    if time.monotonic() > deadline:
                        _log.error("sandbox.cgroup_remove_failed", cgroup=str(directory), error=str(error))
                        break
                    time.sleep(_POLL_SECONDS)

    def _pids(self) -> set[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(FileNotFoundError):
                found.update(int(line) for line in procs.read_text().split())
        return found


def _write_if_present(path: Path, value: str) -> None:
    if path.exists():
        path.write_text(value)


def probe(
    mountinfo: Path = Path("/proc/self/mountinfo"), own: Path = Path("/proc/self/cgroup")
) -> CgroupSupport:
    """Find where this process may create child cgroups with memory, pids and cgroup.kill; warn on gaps."""
    memberships = _memberships(own.read_text())
    memory: Controller | None = None
    pids: Controller | None = None
    kill_parent: Path | None = None
    for version, mountpoint, root, controllers in _cgroup_mounts(mountinfo.read_text()):
        key = "" if version == 2 else next((c for c in controllers if c in memberships), None)
        if key is None or key not in memberships:
            continue
        relative = os.path.relpath(memberships[key], root)
        if relative.startswith(".."):  # our cgroup is outside what this mount shows
            continue
        parent = mountpoint / relative if relative != "." else mountpoint
        files = _child_files(parent)
        if version == 1 and "memory" in controllers and "memory.limit_in_bytes" in files:
            memory = Controller(parent, 1)
        if version == 1 and "pids" in controllers and "pids.max" in files:
            pids = Controller(parent, 1)
        if version == 2:
            memory = memory or (Controller(parent, 2) if "memory.max" in files else None)
            pids = pids or (Controller(parent, 2) if "pids.max" in files else None)
            kill_parent = parent if "cgroup.kill" in files else None
    support = CgroupSupport(memory=memory, pids=pids, kill_parent=kill_parent)
    for parent in {c.parent for c in (memory, pids) if c} | ({kill_parent} if kill_parent else set()):
        _remove_orphans(parent)
    if support.memory is None or support.pids is None:
        _log.warning(
            "sandbox.cgroups_degraded",
            missing=list(support.missing),
            consequence="runs are NOT limited in memory and/or process count, only by rlimits and time",
        )
    return support


def _remove_orphans(parent: Path) -> None:
    """Remove run cgroups whose owning service process died before it could (SIGKILL, OOM, power)."""
    for directory in parent.glob(f"{_RUN_PREFIX}*"):
        owner = directory.name.removeprefix(_RUN_PREFIX).partition("-")[0]
        if owner.isdigit() and not Path("/proc", owner).exists():
            stale = RunCgroup(dirs=(directory,), memory=None, pids=None, kill_file=None)
            stale.kill_all()
            stale.remove()
            _log.warning("sandbox.orphan_cgroup_removed", cgroup=str(directory))


def _memberships(text: str) -> dict[str, str]:
    """Controller name (or "" for v2) → this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def _cgroup_mounts(text: str) -> list[tuple[int, Path, str, frozenset[str]]]:
    """(version, mount point, mount root, v1 controllers) for each cgroup mount in /proc/self/mountinfo."""
    mounts: list[tuple[int, Path, str, frozenset[str]]] = []
    for line in text.splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _source, options = [*tail.split(), "", "", ""][:3]
        parts = fields.split()
        if fstype == "cgroup2":
            mounts.append((2, Path(parts[4]), parts[3], frozenset()))
        elif fstype == "cgroup":
            mounts.append((1, Path(parts[4]), parts[3], frozenset(options.split(","))))
    return mounts


def _child_files(parent: Path) -> set[str]:
    """The interface files a child of `parent` gets, or nothing when children cannot be created there."""
    probe_dir = parent / f"sf-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe_dir.mkdir()
    except OSError:
        return set()
    try:
        return {entry.name for entry in probe_dir.iterdir()}
    finally:
        probe_dir.rmdir()
