"""The bubblewrap sandbox does its ordinary job: runs commands, reports exit codes, keeps time and output."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import sys
import uuid
from pathlib import Path

import pytest

from service_feature.executor.sandbox import netns
from service_feature.executor.sandbox.base import TRUNCATION_MARKER, Limits
from service_feature.executor.sandbox.bwrap import WORKSPACE, BwrapSandbox


async def test_runs_and_reports_the_exit_code(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    result = await bwrap_sandbox.run(
        ["sh", "-c", "echo hello; exit 3"], workdir=workspace, env={}, limits=limits
    )

    assert (result.exit_code, result.output) == (3, "hello\n")
    assert not result.timed_out
    assert not result.cancelled
    assert not result.truncated


async def test_workspace_is_the_writable_cwd(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    (workspace / "input.txt").write_text("from the host")

    result = await bwrap_sandbox.run(
        ["sh", "-c", "pwd; cat input.txt; echo; echo written > output.txt; mkdir -p d/e && echo x > d/e/f"],
        workdir=workspace,
        env={},
        limits=limits,
    )

    assert result.exit_code == 0, result.output
    assert result.output == f"{WORKSPACE}\nfrom the host\n"
    assert (workspace / "output.txt").read_text() == "written\n"
    assert (workspace / "d" / "e" / "f").read_text() == "x\n"


async def test_env_is_exactly_what_was_given(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    result = await bwrap_sandbox.run(["env"], workdir=workspace, env={"GIVEN": "yes"}, limits=limits)

    names = {line.split("=", 1)[0] for line in result.output.splitlines()}
    assert names == {"GIVEN", "PATH", "HOME", "TMPDIR", "LANG", "PWD"}


async def test_tmp_is_private(bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits) -> None:
    host_marker = Path("/tmp") / f"sf-host-{uuid.uuid4().hex}"
    host_marker.write_text("host")
    inner_name = f"sf-inner-{uuid.uuid4().hex}"
    try:
        result = await bwrap_sandbox.run(
            ["sh", "-c", f"ls -A /tmp; echo inner > /tmp/{inner_name} && echo wrote"],
            workdir=workspace,
            env={},
            limits=limits,
        )
    finally:
        host_marker.unlink()

    assert result.exit_code == 0, result.output
    assert result.output.endswith("wrote\n")
    assert host_marker.name not in result.output  # the host's /tmp entries are not there
    listed = set(result.output.split()) - {"wrote"}
    # Only mount points of read-only binds may show (an interpreter living under the host's /tmp).
    binds = [Path(path) for path in bwrap_sandbox.describe()["readonly_paths"]]
    assert all(any(bind.is_relative_to(Path("/tmp") / name) for bind in binds) for name in listed)
    assert not (Path("/tmp") / inner_name).exists()


async def test_pytest_runs_inside(bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits) -> None:
    (workspace / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")

    result = await bwrap_sandbox.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        workdir=workspace,
        env={},
        limits=limits,
    )

    assert result.exit_code == 0, result.output
    assert "1 passed" in result.output


async def test_output_is_capped_with_a_marker(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    capped = dataclasses.replace(limits, output_bytes=1000)

    result = await bwrap_sandbox.run(
        [sys.executable, "-c", "print('x' * 200_000)"], workdir=workspace, env={}, limits=capped
    )

    assert result.exit_code == 0
    assert result.truncated
    assert result.output == "x" * 1000 + TRUNCATION_MARKER


async def test_timeout_kills_the_run(bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits) -> None:
    result = await bwrap_sandbox.run(
        ["sleep", "60"], workdir=workspace, env={}, limits=dataclasses.replace(limits, wall_seconds=0.5)
    )

    assert result.timed_out
    assert result.exit_code != 0
    assert result.duration_seconds < 10


async def test_cancel_stops_the_run_within_a_second(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    cancel = asyncio.Event()
    run = asyncio.create_task(
        bwrap_sandbox.run(["sleep", "60"], workdir=workspace, env={}, limits=limits, cancel=cancel)
    )
    await asyncio.sleep(0.3)
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    cancel.set()

    result = await run

    assert result.cancelled
    assert not result.timed_out
    assert loop.time() - cancelled_at < 1.0


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


async def test_setup_variant_reaches_the_registry_through_the_proxy(workspace: Path, limits: Limits) -> None:
    """Setup's network still does its job: a real `pip download` from PyPI, through pasta and the proxy."""
    if netns.pasta_path() is None:
        pytest.skip("pasta is not installed (apt-get install passt)")
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable from this host")
    sandbox = BwrapSandbox(network=True)
    pip = [str(Path(sys.base_prefix) / "bin" / "python3"), "-m", "pip", "--isolated", "--no-cache-dir"]
    argv = [*pip, "download", "--no-deps", "-d", WORKSPACE, "six"]

    result = await sandbox.run(
        argv, workdir=workspace, env={}, limits=dataclasses.replace(limits, wall_seconds=120)
    )

    assert result.exit_code == 0, result.output
    assert [path.name.split("-")[0] for path in workspace.glob("*.whl")] == ["six"]
    assert sandbox.describe()["egress"] == "proxy"
    assert "setup-network" not in " ".join(sandbox.describe()["degraded"])


async def test_setup_without_pasta_refuses_the_network_and_says_why(
    workspace: Path, limits: Limits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pasta and the default fallback: setup runs with no network at all, and its output says why."""
    monkeypatch.setattr(netns, "pasta_path", lambda: None)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        sandbox = BwrapSandbox(network=True)
        code = (
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')"
        )

        result = await sandbox.run([sys.executable, "-c", code], workdir=workspace, env={}, limits=limits)

        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert "ConnectionRefusedError" in result.output
    assert "setup ran without network: pasta is not installed" in result.output
    assert sandbox.describe()["egress"] == "refused"
    assert "setup-network-refused" in sandbox.describe()["degraded"]


async def test_quota_workspace_round_trip(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    """Under the quota the workspace is a copy: what the command writes, changes and deletes is what the host
    sees afterwards, links stay links, and a file under a directory only root may enter is still copied."""
    (workspace / "kept.txt").write_text("kept")
    (workspace / "changed.txt").write_text("before")
    (workspace / "deleted.txt").write_text("gone")
    (workspace / "link").symlink_to("kept.txt")
    script = "echo after > changed.txt; rm deleted.txt; mkdir -p r/s && echo new > r/s/t; cat link"

    result = await bwrap_sandbox.run(["sh", "-c", script], workdir=workspace, env={}, limits=limits)

    assert (result.exit_code, result.output) == (0, "kept")
    assert sorted(p.name for p in workspace.iterdir()) == ["changed.txt", "kept.txt", "link", "r"]
    assert (workspace / "changed.txt").read_text() == "after\n"
    assert (workspace / "r" / "s" / "t").read_text() == "new\n"
    assert (workspace / "link").is_symlink()
    assert not result.disk_quota_exceeded
    assert bwrap_sandbox.describe()["disk_quota"] is (os.geteuid() == 0)
