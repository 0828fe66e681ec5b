"""Start overhead of the bubblewrap sandbox against a plain subprocess, as ratios.

Two workloads, each run N times alternately plain and sandboxed, median wall time reported:
`true` (pure start cost) and a one-test pytest project run with this venv's python
(`-m pytest -q -p no:cacheprovider`), the executor's real workload. Target: pytest within 1.2x plain.

    .venv/bin/python bench/bench_sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from service_feature.executor.sandbox.base import Limits, Sandbox
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.sandbox.process import ProcessSandbox

LIMITS = Limits(wall_seconds=60)
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]


async def timed(sandbox: Sandbox, argv: Sequence[str], workdir: Path) -> float:
    started = time.perf_counter()
    result = await sandbox.run(argv, workdir=workdir, env={}, limits=LIMITS)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"{sandbox.name} {argv[0]} failed ({result.exit_code}):\n{result.output}")
    return elapsed


async def compare(label: str, argv: Sequence[str], workdir: Path, runs: int) -> None:
    plain, sandboxed = ProcessSandbox(), BwrapSandbox()
    await timed(plain, argv, workdir)  # warm the page cache for both
    await timed(sandboxed, argv, workdir)
    plain_times, sandbox_times = [], []
    for _ in range(runs):
        plain_times.append(await timed(plain, argv, workdir))
        sandbox_times.append(await timed(sandboxed, argv, workdir))
    plain_ms = statistics.median(plain_times) * 1000
    sandbox_ms = statistics.median(sandbox_times) * 1000
    ratio = sandbox_ms / plain_ms
    print(f"{label:<8} plain {plain_ms:8.1f} ms   bwrap {sandbox_ms:8.1f} ms   ratio {ratio:6.2f}x")


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as directory:
        workdir = Path(directory)
        (workdir / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        print(f"median of {runs} runs each (python {sys.version.split()[0]})")
        await compare("true", ["true"], workdir, runs)
        await compare("pytest", PYTEST, workdir, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    asyncio.run(main(parser.parse_args().runs))
