"""A disk quota for a test run: the workspace, `/tmp` and `/dev/shm` share one size-limited tmpfs.

A test once wrote 2.5 GB into the host's runs directory: the file-size rlimit stops one file, not many, and
the workspace is a bind of a host directory. No per-directory quota exists on every host filesystem, and a
loop-mounted image needs loop devices containers rarely have; a tmpfs with `size=` works wherever the
executor is root, and its pages are charged to the run's memory cgroup, so the memory limit still holds.

The run's wrapper, still root, enters a private mount namespace (`unshare --mount`), mounts that tmpfs on a
scratch directory only it can see, copies the workspace in as the sandbox's host uid, runs bwrap with the
copy as `/workspace`, and copies the result back out, again as that uid (never following a link as root).
The host therefore never holds more than the quota from one run, whatever the command writes. The mount
dies with the namespace, so a killed run (timeout, cancel) leaves nothing mounted and copies nothing back.

Used only by a root executor (the namespace needs CAP_SYS_ADMIN); otherwise the run is bounded per file
only and `describe()` says so.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import structlog

from service_feature.executor.sandbox.userns import Identity

QUOTA_MARKER = (
    "\n[service-feature: the disk quota of {mb} MB (workspace, /tmp and /dev/shm together) was exceeded]\n"
)
_SETUP_FAILED = 125  # the wrapper's own exit status when the quota could not be set up
_INODES_PER_MB = 256  # bounds file count too: empty files cost memory without using `size`
_ENOSPC_TEXTS = ("No space left on device", "ENOSPC", "Disk quota exceeded")
_FULL_FRACTION = 0.01  # less than this free counts as full: writers stop at the last pages

_log = structlog.get_logger()


@dataclass(frozen=True)
class Scratch:
    """One run's host-side directory (0711, root's): the tmpfs mount point and the status file."""

    root: Path

    @property
    def mount(self) -> Path:
        return self.root / "scratch"

    @property
    def workspace(self) -> Path:
        return self.mount / "workspace"

    @property
    def tmp(self) -> Path:
        return self.mount / "tmp"

    @property
    def shm(self) -> Path:
        return self.mount / "shm"

    @property
    def status(self) -> Path:
        return self.root / "status"


def make_scratch() -> Scratch:
    """A fresh scratch directory; the mount point stays empty on the host (the tmpfs is private)."""
    root = Path(tempfile.mkdtemp(prefix="sf-quota-"))
    root.chmod(0o711)  # the sandbox's uid traverses it to its tmpfs, and lists nothing
    (root / "scratch").mkdir()
    return Scratch(root)


def remove_scratch(scratch: Scratch) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(scratch.root)


def wrapped(bwrap_command: str, *, scratch: Scratch, identity: Identity, disk_mb: int, workdir: Path) -> str:
    """The shell step that replaces `exec bwrap …`: mount, copy in, run bwrap, record usage, copy out.

    `bwrap_command` runs the command given as "$@"; the whole runs under `unshare --mount` so that the tmpfs
    exists for this run only."""
    as_sandbox = shlex.join(identity.launch_prefix())
    mount, work, status = (shlex.quote(str(p)) for p in (scratch.mount, workdir, scratch.status))
    options = (
        f"size={disk_mb * 1024 * 1024},nr_inodes={max(disk_mb, 1) * _INODES_PER_MB},mode=0700,"
        f"uid={identity.host_uid},gid={identity.host_gid},nosuid,nodev"
    )
    # The copies run as the sandbox's uid, which may not be able to traverse to the workspace (under /root,
    # say): root opens it as fd 5 for that one command only (bwrap must never inherit a host directory).
    copy_in = 'mkdir -m 0700 "$1/workspace" "$1/tmp" "$1/shm" && cp -a /proc/self/fd/5/. "$1/workspace/"'
    # Mirror the copy back, touching only what changed (rewriting every file costs far more than the run on a
    # slow disk). First remove from the host whatever the command deleted or turned into another kind of
    # entry, links included, so that the copy never writes through a link on the host; then copy what is
    # newer (`cp -a` kept every mtime). cp's complaints stay out of the command's output.
    prune = (
        'for f; do s="$0/$f"; '
        'if [ ! -e "$s" ] && [ ! -L "$s" ]; then rm -rf -- "$f"; '
        'elif [ -L "$f" ] && [ ! -L "$s" ]; then rm -f -- "$f"; '
        'elif [ -d "$f" ] && [ ! -L "$f" ] && { [ -L "$s" ] || [ ! -d "$s" ]; }; then rm -rf -- "$f"; '
        "fi; done"
    )
    copy_out = (
        "cd /proc/self/fd/5 && find . -mindepth 1 -depth "
        f'-exec /bin/sh -c {shlex.quote(prune)} "$1/workspace" {{}} + '
        '&& cp -a -u "$1/workspace/." . 2>/dev/null'
    )
    record = f"stat -f -c '%b %a %S %c %d' {mount} > {status}"
    inner = "\n".join(
        [
            f"mount -t tmpfs -o {options} sf-quota {mount} || exit {_SETUP_FAILED}",
            f"if ! {as_sandbox} /bin/sh -c {shlex.quote(copy_in)} sf-copy-in {mount} 5< {work}; then",
            f"  {record}; exit {_SETUP_FAILED}",
            "fi",
            f'{bwrap_command} "$@"',
            "code=$?",
            record,
            f"{as_sandbox} /bin/sh -c {shlex.quote(copy_out)} sf-copy-out {mount} 5< {work}",
            'exit "$code"',
        ]
    )
    unshare = shutil.which("unshare") or "unshare"
    return f'exec {unshare} --mount --propagation private -- /bin/sh -c {shlex.quote(inner)} sf-quota "$@"'


def exceeded(scratch: Scratch, output: str) -> bool:
    """Whether the run filled its quota: the tmpfs was left (nearly) full, in bytes or files, or it was
    more than half full and the command's output speaks of a full disk (it may have deleted what it wrote)."""
    try:
        blocks, available, block_size, inodes, free_inodes = map(int, scratch.status.read_text().split())
    except (OSError, ValueError):
        return False  # killed before it finished (timeout, cancel): that is what the result says
    if blocks == 0:
        return False
    free = available / blocks
    full = free < _FULL_FRACTION or (inodes > 0 and free_inodes == 0)
    complained = free < 0.5 and any(text in output for text in _ENOSPC_TEXTS)
    if full or complained:
        _log.info("sandbox.disk_quota_reached", used_bytes=(blocks - available) * block_size)
    return full or complained
