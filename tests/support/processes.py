"""The host's processes as /proc shows them, for tests that check what a run left behind or ran as."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def host_processes() -> Iterator[tuple[int, bytes]]:
    """(pid, raw NUL-separated command line) of every process readable now; ones that exit meanwhile are
    skipped."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "cmdline").read_bytes()
            except OSError:
                continue
