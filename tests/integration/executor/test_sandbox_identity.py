"""Who the sandboxed command is on the host: an unprivileged uid, checked from the host, never host root.

The executor runs as root here (as it does in its container), which is the case that matters: bwrap alone
would map the sandbox's uid 65534 to host root. Cases that only mean something for a root executor skip
otherwise.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.sandbox.userns import DEFAULT_HOST_UID, identity_for
from tests.support.processes import host_processes

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the hand-off is what a root executor does")


def expected_host_uid() -> int:
    return DEFAULT_HOST_UID if os.geteuid() == 0 else os.geteuid()


def status_ids(pid: int) -> dict[str, list[str]]:
    """Uid, Gid, Groups and CapEff lines of a host process, as the host's /proc shows them."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "NoNewPrivs"):
            fields[name] = value.split()
    return fields


async def test_files_the_command_writes_belong_to_the_unprivileged_host_uid(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    result = await bwrap_sandbox.run(
        ["sh", "-c", "id -u; id -g; echo x > made; mkdir dir"], workdir=workspace, env={}, limits=limits
    )

    assert result.output == "65534\n65534\n", result.output
    host_uid = expected_host_uid()
    assert (workspace / "made").stat().st_uid == host_uid
    assert (workspace / "dir").stat().st_uid == host_uid
    assert bwrap_sandbox.describe()["host_uid"] == host_uid


async def test_the_running_command_is_that_uid_on_the_host_without_capabilities(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    marker = f"59.{uuid.uuid4().int % 10**9}"  # a sleep length no other process on the host has
    cancel = asyncio.Event()
    run = asyncio.create_task(
        bwrap_sandbox.run(["sleep", marker], workdir=workspace, env={}, limits=limits, cancel=cancel)
    )
    try:
        pid = await _host_pid_of(f"sleep\0{marker}\0")
        ids = status_ids(pid)
    finally:
        cancel.set()
        await run

    host_uid = str(expected_host_uid())
    assert ids["Uid"] == [host_uid] * 4  # real, effective, saved, filesystem
    assert ids["Gid"] == [host_uid] * 4
    assert ids["Groups"] == []
    assert int(ids["CapEff"][0], 16) == 0
    assert int(ids["CapPrm"][0], 16) == 0
    assert ids["NoNewPrivs"] == ["1"]


@needs_root
async def test_a_root_only_file_bound_into_the_sandbox_stays_unreadable(
    bwrap_sandbox: BwrapSandbox, tmp_path: Path, workspace: Path, limits: Limits
) -> None:
    """The difference the hand-off makes: as host root, the sandbox could read a 0600 root file it sees."""
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    secret = shelf / "secret"
    secret.write_text("ROOT-ONLY")
    secret.chmod(0o600)
    public = shelf / "public"
    public.write_text("READABLE")
    sandbox = bwrap_sandbox.with_readonly([shelf])

    result = await sandbox.run(
        ["sh", "-c", f"cat {public}; echo; cat {secret}; echo rc=$?"],
        workdir=workspace,
        env={},
        limits=limits,
    )

    assert result.output.startswith("READABLE\n"), result.output  # the bind itself works
    assert "Permission denied" in result.output
    assert "ROOT-ONLY" not in result.output
    assert result.output.endswith("rc=1\n")


@needs_root
async def test_nested_user_namespaces_are_capped_at_zero_inside(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    """Besides the seccomp filter's refusal of unshare: the namespace itself allows no child namespace."""
    result = await bwrap_sandbox.run(
        ["sh", "-c", "cat /proc/sys/user/max_user_namespaces; echo 9 > /proc/sys/user/max_user_namespaces"],
        workdir=workspace,
        env={},
        limits=limits,
    )

    assert result.output.splitlines()[0] == "0", result.output
    assert result.exit_code != 0


@needs_root
def test_lending_the_workspace_never_follows_a_link_out_of_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file").write_text("host")
    (outside / "dir" / "inner").write_text("host")
    workdir = tmp_path / "workdir"
    (workdir / "sub").mkdir(parents=True)
    (workdir / "sub" / "code.py").write_text("")
    (workdir / "to-file").symlink_to(outside / "file")
    (workdir / "to-dir").symlink_to(outside / "dir", target_is_directory=True)

    identity = identity_for(DEFAULT_HOST_UID)
    identity.lend(workdir)

    for lent in (workdir, workdir / "sub", workdir / "sub" / "code.py"):
        assert lent.lstat().st_uid == DEFAULT_HOST_UID
    assert (workdir / "to-file").lstat().st_uid == DEFAULT_HOST_UID  # the link itself only
    for kept in (outside, outside / "file", outside / "dir", outside / "dir" / "inner"):
        assert kept.stat().st_uid == 0


async def _host_pid_of(cmdline: str) -> int:
    """The host pid of the one process whose command line is exactly `cmdline` (NUL-separated)."""
    wanted = cmdline.encode()
    for _ in range(100):
        if found := [pid for pid, raw in host_processes() if raw == wanted]:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no host process runs {cmdline!r}")
