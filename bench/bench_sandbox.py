"""Start overhead of the bubblewrap sandbox against a plain subprocess, as ratios.

Two workloads, each run N times alternately plain and sandboxed, median wall time reported:

* `true`: pure start cost.
* `pytest`: the demo repository's one-test suite (examples/demo-repo), the executor's real workload. Plain
  is the same pytest in a clean virtualenv made here (uv, pytest, the demo editable), as a developer would
  run it; bwrap is what the executor runs: the environment its setup builds for the demo (through
  `EnvironmentCache`, the networked setup sandbox, uv), linked into the workspace read-only, with the
  executor's test command and variables. Target: within 1.3x of plain.

Run as root, a third column is the sandbox as bwrap alone would make it (host root, SANDBOX_HOST_UID=0):
the price of handing the run to an unprivileged host uid (setpriv, the workspace lent) is their ratio.
With `--docker`, a Docker column: the Docker sandbox (a container per run) on the engine at `DOCKER_HOST`,
else on a private engine the test support starts (`tests/support/docker_engine.py`, its local Debian base
image), with the same environment bound read-only. Needs bubblewrap and PyPI (for pytest).

    .venv/bin/python bench/bench_sandbox.py [--runs N] [--docker]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import docker  # type: ignore[import-untyped]

from service_feature.executor.sandbox.base import Limits, ProcessResult, Sandbox
from service_feature.executor.sandbox.bwrap import WORKSPACE, BwrapSandbox
from service_feature.executor.sandbox.docker import DockerSandbox
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.sandbox.userns import identity_for
from service_feature.executor.setup import EnvironmentCache, with_readonly
from service_feature.executor.toolchains import ENV_DIR, PythonToolchain, toolchain_for
from service_feature.executor.toolchains.python import uv_binary
from service_feature.models import Language

LIMITS = Limits(wall_seconds=120)
DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo-repo"


@dataclass(frozen=True)
class Workload:
    """One command per sandbox, each with its own environment variables."""

    argv: dict[str, list[str]]
    env: dict[str, dict[str, str]]


async def timed(sandbox: Sandbox, argv: Sequence[str], workdir: Path, env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    result = await sandbox.run(argv, workdir=workdir, env=env, limits=LIMITS)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"{sandbox.name} {argv[0]} failed ({result.exit_code}):\n{result.output}")
    return elapsed


async def compare(
    label: str, sandboxes: dict[str, Sandbox], workload: Workload, workdirs: dict[str, Path], runs: int
) -> None:
    times: dict[str, list[float]] = {name: [] for name in sandboxes}
    for name, sandbox in sandboxes.items():  # warm the page cache (and plain's bytecode) for each
        await timed(sandbox, workload.argv[name], workdirs[name], workload.env[name])
    for _ in range(runs):
        for name, sandbox in sandboxes.items():
            times[name].append(await timed(sandbox, workload.argv[name], workdirs[name], workload.env[name]))

    ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
    line = f"{label:<8} plain {ms['plain']:8.1f} ms   bwrap {ms['bwrap']:8.1f} ms"
    line += f"   ratio {ms['bwrap'] / ms['plain']:6.2f}x"
    if "docker" in ms:
        line += f"   docker {ms['docker']:8.1f} ms   ratio {ms['docker'] / ms['plain']:6.2f}x"
    if "as-root" in ms:
        line += f"   | as host root {ms['as-root']:8.1f} ms, hand-off {ms['bwrap'] / ms['as-root']:5.2f}x"
    print(line)


def copies(source: Path, names: Sequence[str], directory: Path) -> dict[str, Path]:
    """A copy of the project per sandbox: a workspace lent to one host uid is not another's to write."""
    workdirs = {name: directory / name for name in names}
    for workdir in workdirs.values():
        shutil.copytree(source, workdir, symlinks=True)
    return workdirs


def clean_venv(project: Path, directory: Path) -> Path:
    """A developer's virtualenv for the demo: the platform's Python, pytest, the demo editable."""
    uv = uv_binary() or "uv"
    venv = directory / "clean-venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    install = [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "pytest", "-e", "."]
    subprocess.run(install, cwd=project, check=True)
    return venv


async def executor_environment(
    python: PythonToolchain, project: Path, directory: Path
) -> tuple[PythonToolchain, Path]:
    """The environment the executor's setup builds for the demo, and its cache entry."""
    files = {name: (project / name).read_bytes() for name in ("pyproject.toml",)}
    configured = python.for_project(files)
    cache = EnvironmentCache(directory / "cache", BwrapSandbox(network=True))

    @contextlib.asynccontextmanager
    async def checkout() -> AsyncIterator[Path]:
        workdir = directory / "setup-checkout"
        shutil.copytree(project, workdir)
        yield workdir

    async def run(
        sandbox: Sandbox, argv: Sequence[str], workdir: Path, env: Mapping[str, str], phase: str
    ) -> ProcessResult:
        return await sandbox.run(argv, workdir=workdir, env=env, limits=LIMITS)

    environment = await cache.environment(configured, files, checkout, run)
    assert environment.entry is not None
    return configured, environment.entry


@contextlib.contextmanager
def docker_sandbox(wanted: bool) -> Iterator[DockerSandbox | None]:
    """The Docker sandbox on DOCKER_HOST's engine if one answers, else a private one; None if not wanted."""
    if not wanted:
        yield None
        return
    if os.environ.get("DOCKER_HOST") and DockerSandbox.probe_error() is None:
        yield DockerSandbox(image=os.environ.get("SANDBOX_DOCKER_IMAGE", "python:3.11-slim"))
        return
    from tests.support.docker_engine import private_engine  # only the bench's Docker column needs it

    with private_engine() as engine:
        client = docker.DockerClient(base_url=engine.host)
        try:
            yield DockerSandbox(image=engine.image, client=client)
        finally:
            client.close()


async def main(runs: int, docker_column: bool) -> None:
    with docker_sandbox(docker_column) as container:
        await measure(runs, container)


async def measure(runs: int, container: DockerSandbox | None) -> None:
    names = ["plain", "bwrap", *(["as-root"] if os.geteuid() == 0 else [])]
    bwrap = BwrapSandbox()
    sandboxes: dict[str, Sandbox] = {"plain": ProcessSandbox(), "bwrap": bwrap}
    if "as-root" in names:
        sandboxes["as-root"] = BwrapSandbox(identity=identity_for(0))
    if container is not None:
        names.append("docker")
        sandboxes["docker"] = container
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as name:
        directory = Path(name)
        print(f"median of {runs} runs each (platform python {sys.version.split()[0]})")
        true = Workload({n: ["true"] for n in names}, {n: {} for n in names})
        await compare("true", sandboxes, true, copies(DEMO, names, directory / "true"), runs)

        python = toolchain_for(Language.python)
        assert isinstance(python, PythonToolchain)
        workdirs = copies(DEMO, names, directory / "pytest")
        venv = clean_venv(workdirs["plain"], directory)
        configured, entry = await executor_environment(python, DEMO, directory)
        home = f"{WORKSPACE}/{ENV_DIR}"
        for sandboxed in names[1:]:
            (workdirs[sandboxed] / ENV_DIR).symlink_to(entry / "home", target_is_directory=True)
            sandboxes[sandboxed] = with_readonly(sandboxes[sandboxed], (entry, *configured.readonly_paths()))
        plain_env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)}
        executor_env = configured.environment(home, WORKSPACE, online=False)
        pytest = Workload(
            {"plain": [str(venv / "bin" / "python"), *configured.test_command(home)[1:]]}
            | {n: configured.test_command(home) for n in names[1:]},
            {"plain": plain_env} | {n: executor_env for n in names[1:]},
        )
        print(f"pytest: {configured.test_command(home)} with {configured.version}")
        await compare("pytest", sandboxes, pytest, workdirs, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--docker", action="store_true", help="add the Docker sandbox's column")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.docker))
