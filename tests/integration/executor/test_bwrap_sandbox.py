"""The bubblewrap sandbox does its ordinary job: runs commands, reports exit codes, keeps time and output."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import uuid
from pathlib import Path

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


async def test_network_variant_reaches_the_host(
    workspace: Path, limits: Limits, bwrap_sandbox: BwrapSandbox
) -> None:
    """The control for the abuse suite's network cases: with network=True the same connect succeeds."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED')"
        )

        sandbox = BwrapSandbox(network=True)
        result = await sandbox.run([sys.executable, "-c", code], workdir=workspace, env={}, limits=limits)

    assert result.output == "CONNECTED\n"
    assert sandbox.describe()["network"] is True
