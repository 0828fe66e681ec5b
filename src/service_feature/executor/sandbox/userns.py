"""Who the sandboxed command is on the host: an unprivileged uid, even when the executor runs as root.

bubblewrap started by root (the executor in its container, or on a build host) gives the sandbox a user
namespace whose only mapping is root's: uid 65534 inside is host root outside, so a file the sandbox can reach
(a bind, a workspace) is open to it as root's own, and any way out of the namespaces lands as root. Starting
bwrap as an unprivileged user instead fails on its read-only binds: it resolves their sources as that user,
and interpreters commonly live under directories only root may enter (`/root/.pyenv`, `/root/.cargo`).

So the executor prepares one user namespace at start-up and hands it to every bwrap it starts (`--userns FD`):

* it is created by the sandbox's host uid (through `setpriv` and `unshare`), which makes that uid its owner:
  a bwrap running as that uid gets full capabilities inside it, for the mounts of its set-up, and nothing
  outside it;
* root writes its maps: inside uid/gid 65534 is the sandbox's host uid/gid, and 0 is root, so that those
  capabilities cover root-owned directories while bwrap resolves and binds the read-only paths;
* inside it, `user.max_user_namespaces` is 0, so nothing in a sandbox can create a user namespace of its own
  (bwrap's `--disable-userns` needs `--unshare-user`, which `--userns` excludes; `--assert-userns-disabled`
  checks this on every run).

bwrap then drops every capability before it executes the command, which therefore runs as the host uid with no
privilege at all, in its own mount, PID, network, IPC, UTS and cgroup namespaces. The workspace is lent to
that uid for the run (`lend`): it is the only host path the command may write.

Without root (an executor running as an ordinary user) there is nothing to hand off: bwrap's own user
namespace maps the sandbox to the executor's uid, which is already unprivileged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

SANDBOX_ID = 65534  # the uid and gid a sandboxed command has inside its namespaces
DEFAULT_HOST_UID = 65534
_TIMEOUT_SECONDS = 10
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


class UserNamespaceError(RuntimeError):
    """The hand-off namespace could not be made here; the message says which step failed and why."""


@dataclass(frozen=True)
class Identity:
    """How bwrap is started: as which host uid/gid, and in which prepared user namespace (if any)."""

    host_uid: int
    host_gid: int
    userns_fd: int | None = None

    @property
    def handed_off(self) -> bool:
        return self.userns_fd is not None

    @property
    def privileged(self) -> bool:
        """True when the sandbox is host root: only when SANDBOX_HOST_UID=0 is chosen explicitly."""
        return self.host_uid == 0

    def launch_prefix(self) -> list[str]:
        """The command that becomes the host uid right before bwrap runs (nothing when already it)."""
        if not self.handed_off:
            return []
        setpriv = shutil.which("setpriv", path=_ENV["PATH"]) or "setpriv"
        return [setpriv, f"--reuid={self.host_uid}", f"--regid={self.host_gid}", "--clear-groups", "--"]

    def lend(self, workdir: Path) -> None:
        """Give the workspace to the sandbox's host uid, so the command can write there.

        Links are never followed, and the walk goes by directory descriptors (`os.fwalk`), which skips a
        directory swapped for a link while it runs: a workspace holding `link -> /etc` (from the repository,
        or left by an earlier command) must not hand `/etc` to the sandbox.
        """
        if not self.handed_off:
            return
        os.chown(workdir, self.host_uid, self.host_gid, follow_symlinks=False)
        for _, dirs, files, dir_fd in os.fwalk(workdir, follow_symlinks=False):
            for name in (*dirs, *files):
                os.chown(name, self.host_uid, self.host_gid, dir_fd=dir_fd, follow_symlinks=False)

    def lend_directory(self, path: Path) -> None:
        """Give one directory (not its contents: what the sandbox writes there is its own already) to the
        sandbox's host uid, for a writable bind kept across runs."""
        if self.handed_off:
            os.chown(path, self.host_uid, self.host_gid, follow_symlinks=False)


_lock = threading.Lock()
_identities: dict[int, Identity] = {}


def identity_for(host_uid: int = DEFAULT_HOST_UID) -> Identity:
    """The identity sandboxes of this process run with; the namespace is made once per host uid."""
    if os.geteuid() != 0:
        return Identity(host_uid=os.geteuid(), host_gid=os.getegid())
    if host_uid == 0:
        return Identity(host_uid=0, host_gid=0)
    with _lock:
        if host_uid not in _identities:
            _identities[host_uid] = Identity(host_uid, host_uid, _hand_off_namespace(host_uid, host_uid))
        return _identities[host_uid]


def _hand_off_namespace(uid: int, gid: int) -> int:
    """Make the namespace described in the module docstring; returns an fd that keeps it alive."""
    tools = {name: shutil.which(name, path=_ENV["PATH"]) for name in ("setpriv", "unshare", "nsenter")}
    if missing := sorted(name for name, path in tools.items() if path is None):
        raise UserNamespaceError(f"{', '.join(missing)} not found (Debian package util-linux)")
    as_owner = [str(tools["setpriv"]), f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    holder = subprocess.Popen(
        [*as_owner, str(tools["unshare"]), "--user", "--", "/bin/sh", "-c", "echo ready && read _"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_ENV,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        if holder.stdout.readline() != b"ready\n":
            _, error = holder.communicate(timeout=_TIMEOUT_SECONDS)
            raise UserNamespaceError(
                f"uid {uid} could not create a user namespace: {error.decode(errors='replace').strip()}"
            )
        proc = Path("/proc", str(holder.pid))
        (proc / "uid_map").write_text(f"0 0 1\n{SANDBOX_ID} {uid} 1\n")
        (proc / "gid_map").write_text(f"0 0 1\n{SANDBOX_ID} {gid} 1\n")
        # As root of the namespace (nsenter switches to uid 0 inside), which only its owner may become.
        capped = subprocess.run(
            [
                *as_owner,
                str(tools["nsenter"]),
                f"--user={proc / 'ns' / 'user'}",
                "--",
                "/bin/sh",
                "-c",
                "echo 0 > /proc/sys/user/max_user_namespaces",
            ],
            capture_output=True,
            env=_ENV,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
        if capped.returncode != 0:
            raise UserNamespaceError(
                "could not disable nested user namespaces: " + capped.stderr.decode(errors="replace").strip()
            )
        return os.open(proc / "ns" / "user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise UserNamespaceError(f"could not prepare the sandbox's user namespace: {error}") from error
    finally:
        holder.stdin.close()  # the holder reads EOF and exits; the fd keeps the namespace
        holder.wait(timeout=_TIMEOUT_SECONDS)
