"""The agent's `run_command` round trip for `true`, against the bare sandbox running `true`, in one run.

`run_command` does more than start a process: a mirror check, a fresh worktree of the base commit with the
agent's diff applied, the project's environment linked in, the sandbox (with its disk quota), and a diff of
what changed. The baseline is the same bubblewrap sandbox running `true` in an empty directory. Both on the
demo repository's Python project, environment already set up (the first call, not timed, sets it up).

    .venv/bin/python bench/bench_run_command.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fixtures: the demo repository

from service_feature.demo import create_origin
from service_feature.events import CommandSpec, RunSpec
from service_feature.executor.runner import TestRunner
from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.git import Git
from service_feature.models import Language
from tests.support.platform import EXAMPLES

LIMITS = Limits(wall_seconds=120, memory_mb=2048, pids=512, cpu_seconds=600, tmp_size_mb=512)


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        origin = create_origin(EXAMPLES / "demo-repo", root / "origin")
        git = Git(root / "executor", allow_local=True)
        runner = TestRunner(git, BwrapSandbox(), LIMITS, 1, setup_sandbox=BwrapSandbox(network=True))
        mirror = await git.mirror(str(origin))
        base = await git.resolve_branch(mirror, "main")
        run = RunSpec(
            execution_id="bench",
            repository_url=str(origin),
            base_commit=base,
            diff="",
            language=Language.python,
        )
        spec = CommandSpec(run=run, command="true", timeout_seconds=60)
        first = await runner.run_command(spec)  # sets the environment up: not timed
        if first.exit_code != 0:
            raise SystemExit(f"run_command went wrong: {first}")
        sandbox, empty = BwrapSandbox(), root / "empty"
        empty.mkdir()
        bare, command = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            await sandbox.run(["true"], workdir=empty, env={}, limits=LIMITS)
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            result = await runner.run_command(spec)
            command.append(time.perf_counter() - started)
            if result.exit_code != 0 or result.diff != "":
                raise SystemExit(f"run_command went wrong: {result}")
    bare_median, command_median = statistics.median(bare), statistics.median(command)
    print(f"bare sandbox `true`:        median {bare_median * 1000:7.1f} ms over {rounds}")
    print(f"run_command `true` (runner): median {command_median * 1000:7.1f} ms over {rounds}")
    print(f"ratio: {command_median / bare_median:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    asyncio.run(main(parser.parse_args().rounds))
