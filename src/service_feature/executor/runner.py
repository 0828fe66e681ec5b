"""One test run: materialise base commit + patch in a fresh worktree, run the tests in the sandbox, parse.

The executor never shares a disk with the worker: everything it needs (repository, base commit, the diff)
travels in the request, so any executor replica can run any feature's tests.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from service_feature.executor.results import (
    Counts,
    parse_any,
    parse_cargo,
    parse_go_json,
    parse_javascript,
    parse_junit,
)
from service_feature.executor.sandbox.base import Limits, ProcessResult, Sandbox
from service_feature.git import Git
from service_feature.metrics import EXECUTIONS_ACTIVE
from service_feature.models import Language, TestResult

_JUNIT_FILE = ".service-feature-junit.xml"
_TAIL_CHARS = 8000
SANDBOX_ENV = {
    # The platform's interpreter comes first, so `python -m pytest` in a test_command finds pytest.
    "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "CI": "true",
}


class RunSpec(BaseModel):
    """Everything a test run needs; it travels on the bus."""

    execution_id: str
    repository_url: str
    base_commit: str
    diff: str
    language: Language
    test_command: str | None = None


@dataclass
class ActiveExecution:
    run_id: str
    execution_id: str
    command: str
    sandbox: str
    started_at: datetime
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    started_monotonic: float = field(default_factory=time.monotonic)

    def describe(self) -> dict[str, object]:
        return {
            "id": self.run_id,
            "execution_id": self.execution_id,
            "command": self.command,
            "sandbox": self.sandbox,
            "started_at": self.started_at.isoformat(),
            "elapsed_seconds": round(time.monotonic() - self.started_monotonic, 3),
        }


def test_command_for(spec: RunSpec, python: str = sys.executable) -> list[str]:
    if spec.test_command:
        return ["sh", "-c", spec.test_command]
    commands: dict[Language, list[str]] = {
        Language.python: [
            python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={_JUNIT_FILE}",
        ],
        Language.go: ["go", "test", "-json", "./..."],
        Language.javascript: ["npm", "test"],
        Language.typescript: ["npm", "test"],
        Language.rust: ["cargo", "test"],
    }
    return commands[spec.language]


def summarise(
    spec: RunSpec, argv: Sequence[str], process: ProcessResult, sandbox: str, workdir: Path
) -> TestResult:
    counts: Counts | None = None
    junit = workdir / _JUNIT_FILE
    if junit.is_file():
        counts = parse_junit(junit.read_bytes())
    if counts is None:
        parser = {
            Language.go: parse_go_json,
            Language.rust: parse_cargo,
            Language.javascript: parse_javascript,
            Language.typescript: parse_javascript,
        }.get(spec.language, parse_any)
        counts = parser(process.output) or parse_any(process.output) or Counts()
    if process.exit_code not in (0, None) and counts.failed == 0 and counts.errored == 0:
        counts.errored += 1  # the runner failed without a test to blame (collection error, crash, …)
    return TestResult(
        command=shlex.join(argv),
        sandbox=sandbox,
        exit_code=process.exit_code,
        passed=counts.passed,
        failed=counts.failed,
        errored=counts.errored,
        skipped=counts.skipped,
        timed_out=process.timed_out,
        duration_seconds=process.duration_seconds,
        output_tail=process.output[-_TAIL_CHARS:],
        failures=counts.failures[:50],
    )


class TestRunner:
    __test__ = False  # not a pytest class

    def __init__(self, git: Git, sandbox: Sandbox, limits: Limits, max_concurrent: int) -> None:
        self._git = git
        self._sandbox = sandbox
        self._limits = limits
        self._slots = asyncio.Semaphore(max_concurrent)
        self.active: dict[str, ActiveExecution] = {}

    async def run(self, spec: RunSpec) -> TestResult:
        async with self._slots:
            mirror = await self._git.mirror(spec.repository_url)
            run_id = uuid.uuid4().hex[:12]
            workdir = await self._git.worktree(
                mirror, self._git.root / "runs" / f"{spec.execution_id}-{run_id}", spec.base_commit
            )
            try:
                await self._git.apply(workdir, spec.diff)
                argv = test_command_for(spec)
                active = ActiveExecution(
                    run_id, spec.execution_id, shlex.join(argv), self._sandbox.name, datetime.now(UTC)
                )
                self.active[run_id] = active
                EXECUTIONS_ACTIVE.inc()
                try:
                    process = await self._sandbox.run(
                        argv, workdir=workdir, env=SANDBOX_ENV, limits=self._limits, cancel=active.cancel
                    )
                finally:
                    del self.active[run_id]
                    EXECUTIONS_ACTIVE.dec()
                return summarise(spec, argv, process, self._sandbox.name, workdir)
            finally:
                await self._git.remove_worktree(mirror, workdir)

    def cancel(self, execution_id: str) -> int:
        """Stop every running execution of a feature; returns how many were signalled."""
        targets = [run for run in self.active.values() if run.execution_id == execution_id]
        for run in targets:
            run.cancel.set()
        return len(targets)
