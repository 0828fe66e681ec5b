"""The cgroup probe reads what is mounted and degrades loudly when a controller is missing."""

from __future__ import annotations

import os
from pathlib import Path

from structlog.testing import capture_logs

from service_feature.executor.sandbox import cgroups

MOUNTINFO_WITHOUT_CGROUPS = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"


def test_no_cgroup_mounts_degrade_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(MOUNTINFO_WITHOUT_CGROUPS)
    (tmp_path / "cgroup").write_text("0::/\n")

    with capture_logs() as logs:
        support = cgroups.probe(tmp_path / "mountinfo", tmp_path / "cgroup")

    assert support.missing == ("memory", "pids", "cgroup.kill")
    assert support.describe()["memory"] == "MISSING"
    warnings = [log for log in logs if log["event"] == "sandbox.cgroups_degraded"]
    assert warnings[0]["log_level"] == "warning"


def test_a_mount_we_cannot_create_children_in_is_not_used(tmp_path: Path) -> None:
    """A cgroup2 mount point that is a plain empty directory offers none of the interface files."""
    mountpoint = tmp_path / "unified"
    mountpoint.mkdir()
    (tmp_path / "mountinfo").write_text(f"30 25 0:26 / {mountpoint} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")

    support = cgroups.probe(tmp_path / "mountinfo", tmp_path / "cgroup")

    assert support.missing == ("memory", "pids", "cgroup.kill")
    assert list(mountpoint.iterdir()) == []  # the probe child was removed


def test_v1_and_v2_mounts_are_found_from_the_process_memberships() -> None:
    mountinfo = (
        "40 30 0:40 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "41 30 0:41 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "42 30 0:42 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    memberships = cgroups._memberships("8:pids:/\n4:memory:/service/x\n0::/\n")

    mounts = cgroups._cgroup_mounts(mountinfo)

    assert memberships == {"pids": "/", "memory": "/service/x", "": "/"}
    assert [(version, str(point)) for version, point, _, _ in mounts] == [
        (1, "/sys/fs/cgroup/memory"),
        (1, "/sys/fs/cgroup/pids"),
        (2, "/sys/fs/cgroup/unified"),
    ]
    assert "memory" in mounts[0][3]


def test_orphans_of_dead_owners_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead_owner = tmp_path / "sf-run-999999999-abc"  # above the kernel's pid_max: never alive
    live_owner = tmp_path / f"sf-run-{os.getpid()}-abc"
    unrelated = tmp_path / "someone-else"
    for directory in (dead_owner, live_owner, unrelated):
        directory.mkdir()

    with capture_logs() as logs:
        cgroups._remove_orphans(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live_owner.name, unrelated.name])
    assert [log["cgroup"] for log in logs] == [str(dead_owner)]
