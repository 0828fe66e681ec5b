"""The Docker sandbox against a real (private) engine: its limits checked from inside the container, and
what happens when the image cannot run the command.

Each refusal has a success path in the same command (a line printed only when the call went through), so a
broken check fails instead of passing silently.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service_feature.executor.sandbox.base import Limits, ProcessResult
from service_feature.executor.sandbox.docker import (
    CANNOT_RUN_EXIT,
    MEMORY_LIMIT_MARKER,
    DockerSandbox,
    NetworkFallback,
)
from tests.support.docker_engine import DockerEngine

pytestmark = pytest.mark.xdist_group("docker")


async def shell(sandbox: DockerSandbox, script: str, workspace: Path, limits: Limits) -> ProcessResult:
    return await sandbox.run(["sh", "-c", script], workdir=workspace, env={}, limits=limits)


async def python(sandbox: DockerSandbox, code: str, workspace: Path, limits: Limits) -> ProcessResult:
    return await sandbox.run(["python3", "-c", code], workdir=workspace, env={}, limits=limits)


def fields(output: str) -> dict[str, str]:
    """`name=value` lines of a command's output."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


async def test_runs_in_the_workspace_as_an_unprivileged_user(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    result = await shell(docker_sandbox, "pwd; id -u; echo hi > out.txt; exit 4", workspace, limits)

    assert (result.exit_code, result.output) == (4, "/workspace\n65534\n")
    assert (workspace / "out.txt").read_text() == "hi\n"


STATUS = """
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -d ' \\t' | tr ':' '='
echo "interfaces=$(ls /sys/class/net | tr '\\n' ' ')"
echo "cpu_seconds=$(ulimit -t)"
echo "file_blocks=$(ulimit -f)"
echo "core=$(ulimit -c)"
touch /root-write 2>/dev/null && echo root=writable || echo root=read-only
touch /tmp/x && echo tmp=writable
"""


async def test_limits_hold_inside_the_container(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    result = await shell(docker_sandbox, STATUS, workspace, limits)

    seen = fields(result.output)
    assert result.exit_code == 0, result.output
    assert int(seen["CapEff"], 16) == int(seen["CapBnd"], 16) == 0
    assert seen["NoNewPrivs"] == "1"
    assert seen["Seccomp"] == "2"  # the engine's default seccomp profile, in filter mode
    assert seen["interfaces"].split() == ["lo"]
    assert int(seen["cpu_seconds"]) == limits.cpu_seconds
    assert int(seen["file_blocks"]) * 512 == limits.file_size_mb << 20  # 512-byte blocks, as POSIX says
    assert seen["core"] == "0"
    assert seen["root"] == "read-only"
    assert seen["tmp"] == "writable"


CGROUP_LIMITS = """
import os
def first(*paths):
    for path in paths:
        if os.path.exists(path):
            return open(path).read().strip()
    return "missing"
print("memory=" + first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"))
print("swap=" + first("/sys/fs/cgroup/memory.swap.max", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"))
print("pids=" + first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"))
print("cpu=" + first("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
"""


async def test_cgroup_limits_are_set_for_the_container(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    result = await python(docker_sandbox, CGROUP_LIMITS, workspace, limits)

    seen = fields(result.output)
    assert int(seen["memory"]) == limits.memory_mb << 20, result.output
    assert seen["swap"] in ("0", "missing", str(limits.memory_mb << 20))  # v2: no swap; v1: memory+swap
    assert int(seen["pids"]) == limits.pids
    assert seen["cpu"].split()[0] in ("100000", "1000000")  # one CPU's worth of quota per period


MEMORY_HOG = """
chunks = []
while True:
    chunks.append(bytearray(16 << 20))
    print("allocated", len(chunks) * 16, flush=True)
"""


async def test_memory_hog_is_killed_and_said_so(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    small = dataclasses.replace(limits, memory_mb=96)

    result = await python(docker_sandbox, MEMORY_HOG, workspace, small)

    assert result.exit_code == 137
    assert "allocated 16" in result.output  # it ran, then hit the wall
    assert MEMORY_LIMIT_MARKER in result.output


FORK_BOMB = """
import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as error:
    print("FORK-REFUSED", children, error.errno, flush=True)
"""


async def test_fork_bomb_stops_at_the_pids_limit(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    result = await python(docker_sandbox, FORK_BOMB, workspace, dataclasses.replace(limits, wall_seconds=20))

    refused, children, _ = result.output.split()[:3]
    assert refused == "FORK-REFUSED"
    assert 0 < int(children) < limits.pids


async def test_timeout_kills_the_container(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    result = await docker_sandbox.run(
        ["sleep", "60"], workdir=workspace, env={}, limits=dataclasses.replace(limits, wall_seconds=1)
    )

    assert result.timed_out
    assert result.exit_code == 137


async def test_has_no_network(docker_sandbox: DockerSandbox, workspace: Path, limits: Limits) -> None:
    code = (
        "import socket\n"
        "socket.create_connection(('127.0.0.1', 1), timeout=1) if False else None\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('CONNECTED')\n"
        "except OSError as error:\n    print('NO-NET', error.errno)\n"
    )

    result = await python(docker_sandbox, code, workspace, limits)

    assert result.output.startswith("NO-NET"), result.output


@pytest.fixture
def root_canary() -> Iterator[str]:
    """A secret in the host's /root, which a container must not see."""
    canary = f"SF-CANARY-{uuid.uuid4().hex}"
    path = Path("/root") / f".sf-canary-{uuid.uuid4().hex}"
    try:
        path.write_text(canary)
    except OSError as error:
        pytest.skip(f"cannot place a canary in /root: {error}")
    yield str(path)
    path.unlink()


async def test_host_files_and_environment_stay_outside(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits, root_canary: str
) -> None:
    os.environ["SF_TEST_SECRET"] = "SF-SECRET-VALUE"  # the executor's environment must not leak in
    try:
        script = (
            f"cat {root_canary} 2>/dev/null && echo CANARY-READ; "
            "cat /proc/1/environ | tr '\\0' '\\n' | grep -c SF-SECRET || true; "
            "ls /var/run/docker.sock 2>/dev/null && echo SOCKET-SEEN; echo DONE"
        )
        result = await shell(docker_sandbox, script, workspace, limits)
    finally:
        del os.environ["SF_TEST_SECRET"]

    assert "CANARY-READ" not in result.output
    assert "SOCKET-SEEN" not in result.output
    assert result.output.splitlines()[-2:] == ["0", "DONE"]


async def test_read_only_paths_are_bound_at_their_host_path(
    docker_sandbox: DockerSandbox, tmp_path: Path, workspace: Path, limits: Limits
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tool").write_text("from the host\n")
    sandbox = docker_sandbox.with_readonly([shared])

    result = await shell(
        sandbox, f"cat {shared}/tool; touch {shared}/new 2>/dev/null || echo REFUSED", workspace, limits
    )

    assert result.output == "from the host\nREFUSED\n"


async def test_a_command_the_image_lacks_is_a_clear_result(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    result = await docker_sandbox.run(
        ["/opt/no-such/bin/python", "-m", "pytest"], workdir=workspace, env={}, limits=limits
    )

    assert result.exit_code == CANNOT_RUN_EXIT
    assert docker_sandbox.image in result.output
    assert "/opt/no-such/bin/python -m pytest" in result.output


async def test_an_image_the_engine_lacks_is_a_clear_result(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    missing = DockerSandbox(image="service-feature-no-such-image:1", client=docker_sandbox._client)

    result = await missing.run(["true"], workdir=workspace, env={}, limits=limits)

    assert result.exit_code == CANNOT_RUN_EXIT
    assert "service-feature-no-such-image:1" in result.output


@pytest.mark.parametrize(("fallback", "mode"), [("host", "host"), ("refuse", "none")])
def test_setup_on_an_engine_without_a_bridge_takes_the_fallback(
    docker_engine: DockerEngine, docker_client: object, fallback: NetworkFallback, mode: str
) -> None:
    sandbox = DockerSandbox(
        image=docker_engine.image, client=docker_client, network=True, network_fallback=fallback
    )
    copy = sandbox.with_readonly([Path("/")])  # what setup runs with: it shares the decision

    assert copy.network_mode() == mode
    assert sandbox.describe()["network_mode"] == mode
    assert f"setup-network-{'host' if mode == 'host' else 'refused'}" in sandbox.describe()["degraded"]


async def test_a_path_the_image_has_is_the_images_not_the_hosts(
    docker_sandbox: DockerSandbox, workspace: Path, limits: Limits
) -> None:
    host_opt = Path("/opt")
    if not host_opt.is_dir() or not any(host_opt.iterdir()):
        pytest.skip("the host's /opt is empty: nothing would tell the two apart")
    sandbox = docker_sandbox.with_readonly([host_opt])  # as uv's directory is, in a compose executor

    result = await shell(sandbox, "ls -A /opt; echo END", workspace, limits)

    assert result.output == "END\n"  # debootstrap's /opt is empty
