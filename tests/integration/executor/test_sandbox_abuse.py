"""The abuse suite: hostile code inside the REAL bubblewrap sandbox, and the host checked afterwards.

Every case that asserts a refusal has a visible success path in the same command (a printed line that only
appears when the read or the call went through, or a positive control), so a broken check fails the test
instead of passing silently.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service_feature.executor.sandbox.base import TRUNCATION_MARKER, Limits, ProcessResult
from service_feature.executor.sandbox.bwrap import MEMORY_LIMIT_MARKER, BwrapSandbox


async def python_in(
    sandbox: BwrapSandbox, code: str, workspace: Path, limits: Limits, *args: str
) -> ProcessResult:
    return await sandbox.run([sys.executable, "-c", code, *args], workdir=workspace, env={}, limits=limits)


def needs_cgroup(sandbox: BwrapSandbox, controller: str) -> None:
    if controller in sandbox.describe()["degraded"]:
        pytest.skip(f"the {controller} cgroup controller is not available here (the sandbox logged it)")


@pytest.fixture
def canary() -> str:
    return f"SF-CANARY-{uuid.uuid4().hex}"


@pytest.fixture
def root_canary(canary: str) -> Iterator[Path]:
    """A secret in the host's /root, which the sandbox must not be able to read."""
    path = Path("/root") / f".sf-canary-{uuid.uuid4().hex}"
    try:
        path.write_text(canary)
    except OSError as error:
        pytest.skip(f"cannot place a canary in /root: {error}")
    yield path
    path.unlink()


FORK_BOMB = """
import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
except OSError as error:
    print("FORK-REFUSED", children, error.errno)
"""


async def test_fork_bomb_is_contained_by_the_pids_limit(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits, processes_with: Callable[[str], list[str]]
) -> None:
    needs_cgroup(bwrap_sandbox, "pids")
    marker = uuid.uuid4().hex

    result = await python_in(bwrap_sandbox, FORK_BOMB, workspace, limits, marker)

    refused, children, error = result.output.split()
    assert (refused, int(error)) == ("FORK-REFUSED", errno.EAGAIN)
    assert int(children) < limits.pids
    assert not result.timed_out
    assert processes_with(marker) == []
    assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks


async def test_memory_bomb_is_killed_by_the_memory_limit(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    needs_cgroup(bwrap_sandbox, "memory")
    bomb = (
        "blocks = []\nwhile True:\n    blocks.append(b'x' * (16 << 20))\n    print(len(blocks), flush=True)"
    )

    result = await python_in(bwrap_sandbox, bomb, workspace, dataclasses.replace(limits, memory_mb=128))

    assert result.exit_code == 128 + 9  # SIGKILL from the OOM killer, as reported by bwrap
    assert result.output.endswith(MEMORY_LIMIT_MARKER)
    allocated_mb = 16 * int(result.output.split()[-len(MEMORY_LIMIT_MARKER.split()) - 1])
    assert allocated_mb <= 128


async def test_infinite_loop_times_out_without_survivor(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits, processes_with: Callable[[str], list[str]]
) -> None:
    marker = uuid.uuid4().hex

    result = await python_in(
        bwrap_sandbox, "while True: pass", workspace, dataclasses.replace(limits, wall_seconds=1), marker
    )

    assert result.timed_out
    assert processes_with(marker) == []


async def test_endless_output_is_capped(bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits) -> None:
    result = await bwrap_sandbox.run(
        ["yes", "spam"],
        workdir=workspace,
        env={},
        limits=dataclasses.replace(limits, wall_seconds=1, output_bytes=5000),
    )

    assert result.timed_out
    assert result.truncated
    assert result.output == ("spam\n" * 1000) + TRUNCATION_MARKER


DOUBLE_FORK = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(300)
    os._exit(0)
print("DAEMONIZED", flush=True)
"""


async def test_double_forked_daemon_does_not_survive(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits, processes_with: Callable[[str], list[str]]
) -> None:
    marker = uuid.uuid4().hex

    result = await python_in(bwrap_sandbox, DOUBLE_FORK, workspace, limits, marker)

    assert result.output == "DAEMONIZED\n"
    assert not result.timed_out
    assert processes_with(marker) == []


async def test_tcp_connect_to_a_host_listener_fails(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        code = (
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\n"
            "except OSError as error:\n    print('REFUSED', type(error).__name__)"
        )

        result = await python_in(bwrap_sandbox, code, workspace, limits)

        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever arrived
    assert result.output.startswith("REFUSED"), result.output


# A DNS query for example.com, type A.
DNS_QUERY = bytes.fromhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")


@pytest.mark.parametrize("network", [False, True], ids=["sandboxed", "control-with-network"])
async def test_dns_queries_do_not_leave(
    workspace: Path, limits: Limits, bwrap_sandbox: BwrapSandbox, network: bool
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
        resolver.bind(("127.0.0.1", 0))
        port = resolver.getsockname()[1]
        code = (
            "import socket\nresults = []\n"
            f"query = bytes.fromhex('{DNS_QUERY.hex()}')\n"
            "try:\n    socket.getaddrinfo('example.com', 443)\n    results.append('RESOLVED')\n"
            "except OSError:\n    results.append('NO-RESOLUTION')\n"
            "try:\n    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"    udp.sendto(query, ('127.0.0.1', {port}))\n    results.append('SENT')\n"
            "except OSError:\n    results.append('NOT-SENT')\n"
            "print(*results)"
        )
        sandbox = BwrapSandbox(network=True) if network else bwrap_sandbox

        result = await python_in(sandbox, code, workspace, limits)

        resolver.settimeout(0.5 if network else 0.1)
        try:
            received = resolver.recv(512)
        except (TimeoutError, BlockingIOError):
            received = b""
    if network:
        assert received == DNS_QUERY
    else:  # the datagram may go out on the sandbox's own loopback, never to the host's
        assert result.output.startswith("NO-RESOLUTION")
        assert received == b""


async def test_executor_environment_does_not_leak(
    bwrap_sandbox: BwrapSandbox, tmp_path: Path, limits: Limits, canary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SF_TEST_SECRET", canary)
    workspace = tmp_path / f"workspace-{canary}"  # a host path in bwrap's options, never on its command line
    workspace.mkdir()
    script = "env; for f in /proc/*/environ /proc/*/cmdline; do tr '\\0' '\\n' < $f; echo; done"

    result = await bwrap_sandbox.run(["sh", "-c", script], workdir=workspace, env={}, limits=limits)

    assert "PATH=/usr" in result.output  # /proc/1/environ was readable: the check below means something
    assert "bwrap" in result.output  # and so was /proc/1/cmdline
    assert canary not in result.output


async def test_host_files_outside_the_workspace_are_unreadable(
    bwrap_sandbox: BwrapSandbox,
    tmp_path: Path,
    workspace: Path,
    limits: Limits,
    canary: str,
    root_canary: Path,
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text(canary)
    (workspace / "inside.txt").write_text("INSIDE-READ")
    paths = ["inside.txt", str(outside), "../secret.txt", str(root_canary), str(tmp_path), "/root", "/home"]
    script = 'for f in "$@"; do cat "$f" 2>/dev/null; ls -A "$f" 2>/dev/null; done; echo'

    result = await bwrap_sandbox.run(
        ["sh", "-c", script, "sh", *paths], workdir=workspace, env={}, limits=limits
    )

    assert result.output.startswith("INSIDE-READ")  # the reading loop works
    assert canary not in result.output
    assert root_canary.name not in result.output
    assert "secret.txt" not in result.output


async def test_writes_outside_the_workspace_fail(
    bwrap_sandbox: BwrapSandbox, tmp_path: Path, workspace: Path, limits: Limits
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    created = f"/etc/sf-{uuid.uuid4().hex}"
    targets = [
        "inside.txt",
        str(outside),
        "../outside.txt",
        created,
        "/usr/sf-x",
        "/sf-x",
        str(Path(sys.prefix) / "x"),
    ]
    script = 'for f in "$@"; do (echo overwritten > "$f") 2>/dev/null && echo "WROTE $f"; done; true'

    result = await bwrap_sandbox.run(
        ["sh", "-c", script, "sh", *targets], workdir=workspace, env={}, limits=limits
    )

    assert result.output == "WROTE inside.txt\n"
    assert outside.read_text() == "original"
    assert not Path(created).exists()
    assert not (Path(sys.prefix) / "x").exists()


async def test_symlinks_to_host_files_lead_nowhere(
    bwrap_sandbox: BwrapSandbox,
    tmp_path: Path,
    workspace: Path,
    limits: Limits,
    canary: str,
    root_canary: Path,
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text(canary)
    (workspace / "to-outside").symlink_to(outside)
    (workspace / "to-root").symlink_to(root_canary)
    (workspace / "to-inside").symlink_to(workspace / "real.txt")
    (workspace / "real.txt").write_text("LINK-FOLLOWED")  # an absolute host path: not there inside either
    (workspace / "relative").symlink_to("real.txt")

    result = await bwrap_sandbox.run(
        ["sh", "-c", "cat to-outside to-root to-inside relative 2>/dev/null; echo"],
        workdir=workspace,
        env={},
        limits=limits,
    )

    assert result.output == "LINK-FOLLOWED\n"
    assert canary not in result.output


KERNEL_INTERFACES = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
calls = {"unshare": (272, 0x10000000), "setns": (308, 0, 0), "ptrace": (101, 0, 0, 0, 0),
         "mount": (165, b"none", b"/tmp", b"tmpfs", 0, 0), "keyctl": (250, 0, 0), "bpf": (321, 0, 0, 0),
         "io_uring_setup": (425, 1, 0), "perf_event_open": (298, 0, 0, -1, -1, 0)}
for name, (number, *args) in calls.items():
    ctypes.set_errno(0)
    returned = libc.syscall(number, *args)
    print(name, returned, os.strerror(ctypes.get_errno()) if returned < 0 else "ALLOWED")
"""


async def test_nested_namespaces_and_dangerous_syscalls_are_refused(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    result = await bwrap_sandbox.run(
        ["sh", "-c", "unshare -Ur true 2>&1; echo unshare-cli=$?"], workdir=workspace, env={}, limits=limits
    )
    assert "Operation not permitted" in result.output
    assert result.output.endswith("unshare-cli=1\n")

    result = await python_in(bwrap_sandbox, KERNEL_INTERFACES, workspace, limits)

    lines = result.output.splitlines()
    assert len(lines) == 8, result.output
    assert all(line.endswith(" -1 " + os.strerror(errno.EPERM)) for line in lines), result.output
