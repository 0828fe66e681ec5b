"""When a run counts as having hit its disk quota, from what the quota's wrapper recorded of its tmpfs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service_feature.executor.sandbox.quota import Scratch, exceeded, make_scratch, remove_scratch, wrapped
from service_feature.executor.sandbox.userns import Identity

BLOCKS = 4096  # a 16 MB tmpfs of 4 KiB blocks, with 4096 inodes


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    made = make_scratch()
    yield made
    remove_scratch(made)


def record(scratch: Scratch, available: int, free_inodes: int = 4000) -> None:
    """What `stat -f -c '%b %a %S %c %d'` writes: blocks, available, block size, inodes, free inodes."""
    scratch.status.write_text(f"{BLOCKS} {available} 4096 4096 {free_inodes}\n")


def test_a_full_tmpfs_is_exceeded(scratch: Scratch) -> None:
    record(scratch, available=3)

    assert exceeded(scratch, "")


def test_running_out_of_files_is_exceeded(scratch: Scratch) -> None:
    record(scratch, available=BLOCKS - 10, free_inodes=0)

    assert exceeded(scratch, "")


def test_a_complaint_counts_only_when_the_disk_was_well_used(scratch: Scratch) -> None:
    """A test may delete what it wrote after ENOSPC; a test merely printing the words is not believed."""
    complaint = "OSError: [Errno 28] No space left on device"
    record(scratch, available=BLOCKS // 4)
    assert exceeded(scratch, complaint)
    assert not exceeded(scratch, "all fine")

    record(scratch, available=BLOCKS - 10)
    assert not exceeded(scratch, complaint)


def test_a_run_killed_before_it_recorded_is_not_exceeded(scratch: Scratch) -> None:
    assert not scratch.status.exists()
    assert not exceeded(scratch, "No space left on device")


def test_scratch_is_traversable_not_listable_and_removed(scratch: Scratch) -> None:
    assert scratch.root.stat().st_mode & 0o777 == 0o711
    assert scratch.mount.is_dir()
    assert {scratch.workspace.parent, scratch.tmp.parent, scratch.shm.parent} == {scratch.mount}

    remove_scratch(scratch)

    assert not scratch.root.exists()


def test_the_wrapper_mounts_privately_and_never_hands_bwrap_the_host_workspace() -> None:
    """The host workspace is opened as fd 5 for the copies only; bwrap's line carries no such redirection."""
    made = Scratch(Path("/tmp/sf-quota-x"))
    script = wrapped(
        "setpriv bwrap --args 3 --",
        scratch=made,
        identity=Identity(65534, 65534, userns_fd=7),
        disk_mb=16,
        workdir=Path("/runs/w"),
    )

    assert script.startswith("exec ")
    assert "--mount --propagation private" in script
    assert "size=16777216,nr_inodes=4096" in script
    bwrap_line = next(line for line in script.splitlines() if "setpriv bwrap" in line)
    assert "5<" not in bwrap_line
    assert script.count("5< /runs/w") == 2  # copy in, copy out
