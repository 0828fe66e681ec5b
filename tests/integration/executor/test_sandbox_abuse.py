"""The abuse suite: hostile code inside the REAL bubblewrap sandbox, and the host checked afterwards.

Every case that asserts a refusal has a visible success path in the same command (a printed line that only
appears when the read or the call went through, or a positive control), so a broken check fails the test
instead of passing silently.
"""

from __future__ import annotations

import dataclasses
import errno
import http.server
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service_feature.executor.sandbox import netns, quota
from service_feature.executor.sandbox.base import TRUNCATION_MARKER, Limits, ProcessResult
from service_feature.executor.sandbox.bwrap import MEMORY_LIMIT_MARKER, BwrapSandbox
from service_feature.executor.sandbox.quota import QUOTA_MARKER, make_scratch


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


@pytest.fixture
def host_network_sandbox(monkeypatch: pytest.MonkeyPatch) -> BwrapSandbox:
    """The control: setup's network as the reference design had it (the host's), which pasta's absence and
    SANDBOX_SETUP_NETWORK_FALLBACK=host still select, so the probes below are seen to reach the host."""
    monkeypatch.setattr(netns, "pasta_path", lambda: None)
    sandbox = BwrapSandbox(network=True, network_fallback="host")
    assert sandbox.egress == "host"
    return sandbox


@pytest.fixture
def setup_sandbox() -> BwrapSandbox:
    """Dependency setup's sandbox: its own network namespace, out through pasta and the egress proxy."""
    if netns.pasta_path() is None:
        pytest.skip("pasta is not installed (apt-get install passt)")
    sandbox = BwrapSandbox(network=True)
    assert sandbox.egress == "proxy"
    return sandbox


@pytest.mark.parametrize("kind", ["sandboxed", "setup", "control-host-network"])
async def test_dns_queries_do_not_leave(
    workspace: Path,
    limits: Limits,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    fixture = {"sandboxed": "bwrap_sandbox", "setup": "setup_sandbox"}.get(kind, "host_network_sandbox")
    sandbox: BwrapSandbox = request.getfixturevalue(fixture)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
        resolver.bind(("127.0.0.1", 0))
        port = resolver.getsockname()[1]
        control = kind == "control-host-network"
        # The control does not resolve: the host's resolver may be off loopback, where tests send nothing.
        resolve = (
            "try:\n    socket.getaddrinfo('example.com', 443)\n    results.append('RESOLVED')\n"
            "except OSError:\n    results.append('NO-RESOLUTION')\n"
        )
        code = (
            "import socket\nresults = []\n"
            f"query = bytes.fromhex('{DNS_QUERY.hex()}')\n"
            f"{'' if control else resolve}"
            "try:\n    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"    udp.sendto(query, ('127.0.0.1', {port}))\n    results.append('SENT')\n"
            "except OSError:\n    results.append('NOT-SENT')\n"
            "print(*results)"
        )

        result = await python_in(sandbox, code, workspace, limits)

        resolver.settimeout(0.5 if control else 0.1)
        try:
            received = resolver.recv(512)
        except (TimeoutError, BlockingIOError):
            received = b""
    if control:
        assert received == DNS_QUERY
    else:  # the datagram may go out on the sandbox's own loopback, never to the host's
        assert result.output.startswith("NO-RESOLUTION"), result.output
        assert received == b""


class HostListener:
    """An HTTP server on the host's 127.0.0.1 that records every request: what setup must never reach."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                listener.requests.append(self.path)
                body = b'<a href="six-1.17.0-py2.py3-none-any.whl">six</a>'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostListener:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# Only ever asked of the proxy, which refuses them before connecting: no test sends traffic anywhere else.
BEHIND_THE_PROXY = ("https://127.0.0.1/", "https://10.0.0.1/", "https://169.254.169.254/latest/meta-data/")
REACH_THE_HOST = """
import os, socket, sys, urllib.request
port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    print("DIRECT-CONNECTED")
except OSError as error:
    print("DIRECT-REFUSED", type(error).__name__)
for url in [f"http://127.0.0.1:{port}/simple/", *sys.argv[2:]]:
    try:
        urllib.request.urlopen(url, timeout=10)
        print("FETCHED", url)
    except OSError as error:
        print("NOT-FETCHED", url, error)
"""


async def test_setup_cannot_reach_the_hosts_loopback(
    setup_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    """Code a repository's setup runs (setup.py, a build backend) tries the host's 127.0.0.1 directly and
    through the proxy it is given, and internal addresses through the proxy: all refused, nothing arrives."""
    with HostListener() as listener:
        result = await python_in(
            setup_sandbox, REACH_THE_HOST, workspace, limits, str(listener.port), *BEHIND_THE_PROXY
        )

    assert listener.requests == []
    lines = result.output.splitlines()
    assert lines[0].startswith("DIRECT-REFUSED"), result.output  # the sandbox's own loopback: nobody there
    assert len(lines) == 5, result.output
    assert all(line.startswith("NOT-FETCHED") for line in lines[1:]), result.output
    assert all("403" in line for line in lines[1:]), result.output  # the proxy answered, and refused


async def test_control_host_network_reaches_the_listener(
    host_network_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    """The same probe with the host's network (the reference design's setup) does reach the listener: the
    case above fails for the right reason. Loopback only: without the proxy, the other URLs would leave."""
    with HostListener() as listener:
        result = await python_in(host_network_sandbox, REACH_THE_HOST, workspace, limits, str(listener.port))

    assert result.output.startswith("DIRECT-CONNECTED"), result.output
    assert listener.requests == ["/simple/"]


async def test_requirements_find_links_to_the_host_are_not_followed(
    setup_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    """A requirements file pointing pip at the host's loopback: pip's request never arrives."""
    with HostListener() as listener:
        (workspace / "requirements.txt").write_text(f"--find-links http://127.0.0.1:{listener.port}/\nsix\n")
        pip = [str(Path(sys.base_prefix) / "bin" / "python3"), "-m", "pip", "--isolated"]
        argv = [*pip, "download", "--no-index", "--no-deps", "-d", "/tmp/dl", "-r", "requirements.txt"]

        result = await setup_sandbox.run(argv, workdir=workspace, env={}, limits=limits)

    assert listener.requests == []
    assert result.exit_code != 0
    assert "No matching distribution found for six" in result.output, result.output


WRITE_MEGABYTES = """
import sys
where, megabytes = sys.argv[1], int(sys.argv[2])
written = 0
try:
    with open(where, "wb") as f:
        for _ in range(megabytes):
            f.write(b"x" * (1 << 20))
            f.flush()
            written += 1
except OSError as error:
    print("STOPPED", where, written, error.errno)
else:
    print("WROTE", where, written)
"""


def apparent_bytes(root: Path) -> int:
    return sum(path.lstat().st_size for path in root.rglob("*"))


async def test_disk_quota_stops_a_run_writing_past_it(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/tmp and the workspace share one quota: 10 MB in each of 16 MB fills it; the host keeps at most 16."""
    if not bwrap_sandbox.disk_quota:
        pytest.skip("the disk quota needs a root executor (the sandbox logged it as degraded)")
    scratches: list[quota.Scratch] = []
    monkeypatch.setattr(quota, "make_scratch", lambda: scratches.append(make_scratch()) or scratches[-1])
    quota_mb = 16
    script = f"python3 -c '{WRITE_MEGABYTES}' /tmp/a 10; python3 -c '{WRITE_MEGABYTES}' big 10"

    result = await bwrap_sandbox.run(
        ["sh", "-c", script],
        workdir=workspace,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        limits=dataclasses.replace(limits, disk_mb=quota_mb),
    )

    first, second, *_ = result.output.splitlines()
    assert first == "WROTE /tmp/a 10"  # under the quota, writes work
    assert second.startswith("STOPPED big "), result.output
    assert second.endswith(f" {errno.ENOSPC}"), result.output
    assert int(second.split()[2]) < quota_mb - 10 + 1
    assert result.disk_quota_exceeded
    assert result.output.endswith(QUOTA_MARKER.format(mb=quota_mb))
    assert 0 < apparent_bytes(workspace) <= quota_mb << 20  # what the run wrote is back, capped
    assert len(scratches) == 1
    assert not scratches[0].root.exists()  # the scratch directory is removed; its mount was never the host's


async def test_disk_quota_counts_files_not_only_bytes(
    bwrap_sandbox: BwrapSandbox, workspace: Path, limits: Limits
) -> None:
    """Millions of empty files use no `size` but cost memory: the inode bound stops them too."""
    if not bwrap_sandbox.disk_quota:
        pytest.skip("the disk quota needs a root executor (the sandbox logged it as degraded)")
    code = (
        "import os\ncount = 0\ntry:\n    while True:\n        open(f'/tmp/f{count}', 'w').close()\n"
        "        count += 1\nexcept OSError as error:\n    print('STOPPED', count, error.errno)"
    )

    result = await python_in(bwrap_sandbox, code, workspace, dataclasses.replace(limits, disk_mb=4))

    stopped, count, error = result.output.split()[:3]
    assert (stopped, int(error)) == ("STOPPED", errno.ENOSPC)
    assert int(count) <= 4 * 256
    assert result.disk_quota_exceeded


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


async def test_copying_the_workspace_back_never_writes_through_a_host_link(
    bwrap_sandbox: BwrapSandbox, tmp_path: Path, workspace: Path, limits: Limits
) -> None:
    """Under the quota the workspace is copied back to the host: a link the repository had (to a host
    directory) that the command replaces with a directory of its own must not lead the copy outside."""
    if not bwrap_sandbox.disk_quota:
        pytest.skip("the disk quota needs a root executor (the sandbox logged it as degraded)")
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "door").symlink_to(outside)
    (workspace / "was-dir").mkdir()
    (workspace / "was-dir" / "f").write_text("x")
    script = "rm door; mkdir door; echo planted > door/planted; rm -r was-dir; echo now-a-file > was-dir"

    result = await bwrap_sandbox.run(["sh", "-c", script], workdir=workspace, env={}, limits=limits)

    assert result.exit_code == 0, result.output
    assert list(outside.iterdir()) == []
    assert not (workspace / "door").is_symlink()
    assert (workspace / "door" / "planted").read_text() == "planted\n"
    assert (workspace / "was-dir").read_text() == "now-a-file\n"
