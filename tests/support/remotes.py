"""Remotes that misbehave the way real ones do, for tests of what the platform does about it."""

from __future__ import annotations

from pathlib import Path

_STALL_ONCE = """#!/bin/sh
# git runs this instead of `git pack-objects …` (appended as "$@") when serving a fetch.
if [ ! -e "{marker}" ]; then
    touch "{marker}"
    sleep 600
fi
exec "$@"
"""


def stall_first_fetch(git_home: Path) -> Path:
    """Make the first fetch that git, run with HOME=`git_home`, serves from a local (`file://`) remote hang
    like a remote that stopped answering; later fetches work. Returns the marker file the stall leaves.

    `uploadpack.packObjectsHook` is honoured from the global config only, which the platform's git reads
    from its workspace root (its HOME): so only that service's fetches stall."""
    git_home.mkdir(parents=True, exist_ok=True)
    marker = git_home / "stalled-once"
    hook = git_home / "stall-once.sh"
    hook.write_text(_STALL_ONCE.format(marker=marker))
    hook.chmod(0o755)
    (git_home / ".gitconfig").write_text(f"[uploadpack]\n\tpackObjectsHook = {hook}\n")
    return marker
