"""Start overhead of the bubblewrap sandbox against a plain subprocess, as ratios.

Two workloads, each run N times alternately plain and sandboxed, median wall time reported:
`true` (pure start cost) and a one-test pytest project run with this venv's python
(`-m pytest -q -p no:cacheprovider`), the executor's real workload. Target: pytest within 1.2x plain.
Run as root, a third column is the sandbox as bwrap alone would make it (host root, SANDBOX_HOST_UID=0):
the price of handing the run to an unprivileged host uid (setpriv, the workspace lent) is their ratio.

    .venv/bin/python bench/bench_sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from service_feature.executor.sandbox.base import Limits, Sandbox
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.sandbox.userns import identity_for

LIMITS = Limits(wall_seconds=60)
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]


async def timed(sandbox: Sandbox, argv: Sequence[str], workdir: Path) -> float:
    started = time.perf_counter()
    result = await sandbox.run(argv, workdir=workdir, env={}, limits=LIMITS)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"{sandbox.name} {argv[0]} failed ({result.exit_code}):\n{result.output}")
    return elapsed


async def compare(label: str, argv: Sequence[str], project: Path, runs: int) -> None:
    sandboxes: dict[str, Sandbox] = {"plain": ProcessSandbox(), "bwrap": BwrapSandbox()}
    if os.geteuid() == 0:
        sandboxes["as-root"] = BwrapSandbox(identity=identity_for(0))
    times: dict[str, list[float]] = {name: [] for name in sandboxes}
    # A copy of the project each: a workspace lent to one host uid is not another's to write.
    workdirs = {name: project.parent / f"{label}-{name}" for name in sandboxes}
    for workdir in workdirs.values():
        shutil.copytree(project, workdir)
    for name, sandbox in sandboxes.items():
        await timed(sandbox, argv, workdirs[name])  # warm the page cache for each
    for _ in range(runs):
        for name, sandbox in sandboxes.items():
            times[name].append(await timed(sandbox, argv, workdirs[name]))

    ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
    line = f"{label:<8} plain {ms['plain']:8.1f} ms   bwrap {ms['bwrap']:8.1f} ms"
    line += f"   ratio {ms['bwrap'] / ms['plain']:6.2f}x"
    if "as-root" in ms:
        line += f"   | as host root {ms['as-root']:8.1f} ms, hand-off {ms['bwrap'] / ms['as-root']:5.2f}x"
    print(line)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as directory:
        project = Path(directory) / "project"
        project.mkdir()
        (project / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        print(f"median of {runs} runs each (python {sys.version.split()[0]})")
        await compare("true", ["true"], project, runs)
        await compare("pytest", PYTEST, project, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    asyncio.run(main(parser.parse_args().runs))
