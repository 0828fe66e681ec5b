"""Killing a child process together with everything it started.

Children are started with `start_new_session=True`, so each leads a process group of its own: one `killpg`
reaches git's helpers (remote-https, index-pack) or a sandbox's wrapper and bwrap alike.
"""

from __future__ import annotations

import contextlib
import os
import signal


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by `pid`; nothing to do when it is gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
