"""One test run: dependencies, the base commit's results, then base commit + patch, compared test by test.

The executor never shares a disk with the worker: everything it needs (repository, base commit, the diff)
travels in the request, so any executor replica can run any feature's tests. A run is:

1. **setup** (`setup.py`): the base commit's dependencies, installed by a networked sandbox once per
   dependency set and cached. A patch that changes dependency files is flagged; its own setup runs only when
   `allow_dependency_changes` is set, otherwise its tests run against the base's environment.
2. **baseline**: the same test command on the base commit, cached per (repository, commit, command,
   environment), so failures already there are reported as pre-existing instead of blamed on the patch.
   When the base's suite cannot run (or finds no test) and the toolchain's `retry` offers another way to
   set up or run it (an older pytest, every extra, a wider file pattern), that way's setup and baseline
   follow, and the last way that set up is the one the patched run uses (`_settled`).
3. **the patched run**, without network, and its classification against the baseline (`baseline.py`).

What detection gets wrong for one repository, an operator overrides in `.service-feature.yml` at its root
(`overrides.py`): extra setup commands, the test command, the Python version; a request's own test
command still comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service_feature.events import CommandResult, CommandSpec, RunSpec
from service_feature.executor.baseline import classify
from service_feature.executor.overrides import OVERRIDES_FILE, overrides_or_default
from service_feature.executor.results import Counts
from service_feature.executor.sandbox.base import Limits, ProcessResult, Sandbox
from service_feature.executor.setup import (
    Environment,
    EnvironmentCache,
    JsonStore,
    SetupFailed,
    changed_files,
    file_lock,
    with_readonly,
    workspace_path,
)
from service_feature.executor.toolchains import DependencyFiles, Toolchain, toolchain_for
from service_feature.git import Git
from service_feature.metrics import EXECUTIONS_ACTIVE
from service_feature.models import TestCase, TestResult

_TAIL_CHARS = 8000
_HEAD_CHARS = 2000
_MAX_FAILURES = 50


class ExecutionCancelled(Exception):
    """The run was stopped (kill switch or feature cancelled) before it finished: it has no result."""


@dataclass
class ActiveExecution:
    run_id: str
    execution_id: str
    command: str
    sandbox: str
    started_at: datetime
    phase: str = "tests"
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    started_monotonic: float = field(default_factory=time.monotonic)

    def describe(self) -> dict[str, object]:
        return {
            "id": self.run_id,
            "execution_id": self.execution_id,
            "phase": self.phase,
            "command": self.command,
            "sandbox": self.sandbox,
            "started_at": self.started_at.isoformat(),
            "elapsed_seconds": round(time.monotonic() - self.started_monotonic, 3),
        }


@dataclass
class Outcome:
    """One test command's run, parsed."""

    process: ProcessResult
    counts: Counts

    def summary(self, toolchain: Toolchain) -> dict[str, Any]:
        no_tests = toolchain.no_tests(self.process.exit_code)
        return {
            "passed": self.counts.passed,
            "failed": self.counts.failed,
            "errored": self.counts.errored,
            "skipped": self.counts.skipped,
            "unattributed_failures": self.counts.unattributed,
            "exit_code": self.process.exit_code,
            "timed_out": self.process.timed_out,
            "duration_seconds": round(self.process.duration_seconds, 3),
            **({"no_tests": "the suite ran and found no test"} if no_tests else {}),
        }


def head_and_tail(text: str, head: int = _HEAD_CHARS, tail: int = _TAIL_CHARS) -> str:
    """`text`, or its head and tail with a note of what was left out between them."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[… {len(text) - head - tail} characters left out …]\n{text[-tail:]}"


def test_argv(spec: RunSpec, toolchain: Toolchain, home: str | None) -> list[str]:
    return ["sh", "-c", spec.test_command] if spec.test_command else toolchain.test_command(home)


def with_overrides(spec: RunSpec, base_files: DependencyFiles) -> RunSpec:
    """The request's test command, else the repository's `.service-feature.yml` one, else detection's."""
    if spec.test_command:
        return spec
    return spec.model_copy(update={"test_command": overrides_or_default(base_files).test_command})


def measure(toolchain: Toolchain, process: ProcessResult, workdir: Path) -> Counts:
    counts = toolchain.parse(process.output, workdir) or Counts()
    failed_to_run = process.exit_code not in (0, None) and not toolchain.no_tests(process.exit_code)
    if failed_to_run and counts.failed == 0 and counts.errored == 0:
        counts.errored += 1  # the runner failed without a test to blame (collection error, crash, …)
    return counts


class TestRunner:
    __test__ = False  # not a pytest class

    def __init__(
        self,
        git: Git,
        sandbox: Sandbox,
        limits: Limits,
        max_concurrent: int,
        *,
        setup_sandbox: Sandbox | None = None,
        cache_root: Path | None = None,
        allow_dependency_changes: bool = False,
    ) -> None:
        """`setup_sandbox` installs dependencies and should have network (`create_sandbox(…, network=True)`);
        without one, setup runs in `sandbox`, which only works for dependencies that need no download.
        `cache_root` defaults to `<git root>/cache`, i.e. `<workspaces>/executor/cache`."""
        self._git = git
        self._sandbox = sandbox
        self._limits = limits
        self._slots = asyncio.Semaphore(max_concurrent)
        root = cache_root or git.root / "cache"
        self._environments = EnvironmentCache(root, setup_sandbox or sandbox)
        self._baselines = JsonStore(root / "baselines")
        self._allow_dependency_changes = allow_dependency_changes
        self.active: dict[str, ActiveExecution] = {}

    async def run(self, spec: RunSpec) -> TestResult:
        toolchain = toolchain_for(spec.language)
        if missing := toolchain.missing():
            return self._not_run("", missing)
        async with self._slots:
            mirror = await self._git.mirror(spec.repository_url, commit=spec.base_commit)
            async with self._worktree(spec, mirror, "patched") as workdir:
                await self._git.apply(workdir, spec.diff)
                toolchain, spec, base_files = await self._project(spec, mirror, toolchain)
                patched_files = await self._dependency_files(toolchain, workdir, "")
                changed = changed_files(base_files, patched_files)
                try:
                    toolchain, base_env, (baseline, cases) = await self._settled(
                        spec, mirror, toolchain, base_files
                    )
                    env = base_env
                    if changed and self._allow_dependency_changes:
                        env = await self._environment(spec, mirror, toolchain, patched_files, spec.diff)
                except SetupFailed as error:
                    return self._not_run("setup", str(error), dependency_files_changed=changed)
                argv = test_argv(spec, toolchain, env.home(workspace_path(self._sandbox, workdir)))
                patched = await self._test(spec, toolchain, env, workdir, "tests")
        counts = patched.counts
        return TestResult(
            command=shlex.join(argv),
            sandbox=self._sandbox.name,
            exit_code=patched.process.exit_code,
            passed=counts.passed,
            failed=counts.failed,
            errored=counts.errored,
            skipped=counts.skipped,
            timed_out=patched.process.timed_out,
            disk_quota_exceeded=patched.process.disk_quota_exceeded,
            duration_seconds=patched.process.duration_seconds,
            output_tail=patched.process.output[-_TAIL_CHARS:],
            failures=counts.failures[:_MAX_FAILURES],
            unattributed_failures=counts.unattributed,
            baseline=baseline,
            classification=classify(cases, counts.cases),
            dependency_files_changed=changed,
            environment=env.describe(),
        )

    async def prepare(self, spec: RunSpec) -> TestResult:
        """Setup and the baseline on the base commit alone (`spec.diff` is ignored), before any model call:
        the result's `untestable` says why the base cannot be tested, if so. The environment and the
        baseline it builds are cached, so the patched runs that follow reuse them."""
        toolchain = toolchain_for(spec.language)
        if missing := toolchain.missing():
            return self._not_run("", missing, untestable=missing)
        async with self._slots:
            mirror = await self._git.mirror(spec.repository_url, commit=spec.base_commit)
            toolchain, spec, base_files = await self._project(spec, mirror, toolchain)
            try:
                toolchain, env, (baseline, _) = await self._settled(spec, mirror, toolchain, base_files)
            except SetupFailed as error:
                reason = f"environment: {error}"
                return self._not_run("setup", reason, untestable=reason[-_TAIL_CHARS:])
        argv = test_argv(spec, toolchain, None)
        return TestResult(
            command=shlex.join(argv),
            sandbox=self._sandbox.name,
            exit_code=baseline["exit_code"],
            passed=int(baseline["passed"]),
            failed=int(baseline["failed"]),
            errored=int(baseline["errored"]),
            skipped=int(baseline["skipped"]),
            timed_out=bool(baseline["timed_out"]),
            duration_seconds=float(baseline["duration_seconds"]),
            output_tail=str(baseline.get("output_tail", "")),
            baseline=baseline,
            environment=env.describe(),
            untestable=toolchain.untestable(baseline, shlex.join(argv)),
        )

    async def run_command(self, spec: CommandSpec) -> CommandResult:
        """The agent's `run_command`: `sh -c command` on the base commit plus `spec.run.diff`, in the test
        sandbox and the project's environment (no network; the test run's limits, with the command's own
        timeout, capped by the test timeout); the whole change from the base afterwards, leaving out what
        the environment links into the workspace."""
        run = spec.run
        toolchain = toolchain_for(run.language)
        if missing := toolchain.missing():
            return CommandResult(error=missing)
        async with self._slots:
            mirror = await self._git.mirror(run.repository_url, commit=run.base_commit)
            toolchain, run, base_files = await self._project(run, mirror, toolchain)
            try:
                toolchain, env, _ = await self._settled(run, mirror, toolchain, base_files)
            except SetupFailed as error:
                return CommandResult(error=f"the project's environment could not be set up: {error}")
            async with self._worktree(run, mirror, "command") as workdir:
                await self._git.apply(workdir, run.diff)
                git_dir = await self._git.worktree_git_dir(workdir)  # before the command can touch it
                process = await self._command(run, toolchain, env, workdir, spec)
                after = await self._git.diff(
                    workdir, run.base_commit, exclude=env.linked_paths(), git_dir=git_dir
                )
        return CommandResult(
            exit_code=process.exit_code,
            timed_out=process.timed_out,
            output=head_and_tail(process.output),
            diff=after,
        )

    def _not_run(self, command: str, reason: str, **fields: Any) -> TestResult:
        """The result of a run that never reached the tests (no toolchain, failed setup): one error."""
        return TestResult(
            command=command,
            sandbox=self._sandbox.name,
            exit_code=None,
            errored=1,
            output_tail=reason[-_TAIL_CHARS:],
            **fields,
        )

    async def _project(
        self, spec: RunSpec, mirror: Path, toolchain: Toolchain
    ) -> tuple[Toolchain, RunSpec, DependencyFiles]:
        """The base commit's dependency files, and the toolchain and spec as they configure them. In a
        thread: the first Python project probes the host's interpreters (subprocesses, ~0.4 s), which must
        not stall the event loop every service in the process shares."""
        base_files = await self._dependency_files(toolchain, mirror, spec.base_commit)
        configured = await asyncio.to_thread(toolchain.for_project, base_files)
        configured = configured.for_repository(spec.repository_url)
        return configured, with_overrides(spec, base_files), base_files

    def cancel(self, execution_id: str | None = None) -> int:
        """Stop the running executions of one feature (or all of them); returns how many were signalled."""
        targets = [run for run in self.active.values() if execution_id in (None, run.execution_id)]
        for run in targets:
            run.cancel.set()
        return len(targets)

    # -- the steps -------------------------------------------------------------------------------------

    async def _environment(
        self, spec: RunSpec, mirror: Path, toolchain: Toolchain, files: DependencyFiles, diff: str
    ) -> Environment:
        """The environment for one dependency set; a cache miss installs it in a fresh checkout."""

        @contextlib.asynccontextmanager
        async def checkout() -> AsyncIterator[Path]:
            async with self._worktree(spec, mirror, "setup") as workdir:
                await self._git.apply(workdir, diff)
                yield workdir

        async def run(
            sandbox: Sandbox, argv: Sequence[str], workdir: Path, env: Mapping[str, str], phase: str
        ) -> ProcessResult:
            return await self._sandboxed(spec, sandbox, argv, workdir, env, phase)

        return await self._environments.environment(toolchain, files, checkout, run)

    async def _settled(
        self, spec: RunSpec, mirror: Path, toolchain: Toolchain, files: DependencyFiles
    ) -> tuple[Toolchain, Environment, tuple[dict[str, Any], list[TestCase]]]:
        """The base commit's environment and baseline, set up and run the toolchain's way, then its `retry`
        ways in turn as long as the last baseline gets one (the base's suite could not run, or found no
        test): the last way that set up wins. Each way's environment and baseline are cached, so a patched
        run settles on the same way again by reading the caches. Raises SetupFailed when the first way's
        setup fails."""
        env = await self._environment(spec, mirror, toolchain, files, "")
        baseline = await self._baseline(spec, mirror, toolchain, env)
        while (retry := toolchain.retry(baseline[0])) is not None:
            try:
                retry_env = await self._environment(spec, mirror, retry, files, "")
            except SetupFailed:
                break  # this way cannot even be set up (the project pins against it): keep the last
            toolchain, env = retry, retry_env
            baseline = await self._baseline(spec, mirror, toolchain, env)
        return toolchain, env, baseline

    async def _baseline(
        self, spec: RunSpec, mirror: Path, toolchain: Toolchain, env: Environment
    ) -> tuple[dict[str, Any], list[TestCase]]:
        """The base commit's results: its summary and every named test, cached per commit and command."""
        key = hashlib.sha256(
            "\0".join(
                [
                    spec.repository_url,
                    spec.base_commit,
                    shlex.join(test_argv(spec, toolchain, None)),  # a `retry` way may run it differently
                    env.key,
                    toolchain.version,
                ]
            ).encode()
        ).hexdigest()
        async with file_lock(self._baselines.path(key).with_suffix(".lock")):
            stored = self._baselines.get(key)
            if stored is None:
                async with self._worktree(spec, mirror, "base") as workdir:
                    outcome = await self._test(spec, toolchain, env, workdir, "baseline")
                stored = {
                    "summary": {
                        "commit": spec.base_commit,
                        **outcome.summary(toolchain),
                        "output_tail": outcome.process.output[-_TAIL_CHARS:],
                    },
                    "cases": [case.model_dump(mode="json") for case in outcome.counts.cases],
                }
                if not outcome.process.timed_out:
                    self._baselines.put(key, stored)
                cached = False
            else:
                cached = True
        cases = [TestCase.model_validate(case) for case in stored["cases"]]
        return {**stored["summary"], "cached": cached}, cases

    async def _test(
        self, spec: RunSpec, toolchain: Toolchain, env: Environment, workdir: Path, phase: str
    ) -> Outcome:
        """The test command in `workdir` with the environment linked in, no network, parsed."""
        env.link_into(workdir)
        workspace = workspace_path(self._sandbox, workdir)
        home = env.home(workspace)
        sandbox = with_readonly(self._sandbox, (*toolchain.readonly_paths(), *env.readonly_paths()))
        variables = toolchain.environment(home, workspace, online=False)
        process = await self._sandboxed(
            spec, sandbox, test_argv(spec, toolchain, home), workdir, variables, phase
        )
        return Outcome(process, measure(toolchain, process, workdir))

    async def _command(
        self, spec: RunSpec, toolchain: Toolchain, env: Environment, workdir: Path, command: CommandSpec
    ) -> ProcessResult:
        """The agent's command in `workdir`, set up as a test run is, with its own wall-time limit."""
        env.link_into(workdir)
        workspace = workspace_path(self._sandbox, workdir)
        sandbox = with_readonly(self._sandbox, (*toolchain.readonly_paths(), *env.readonly_paths()))
        variables = toolchain.environment(env.home(workspace), workspace, online=False)
        wall = min(self._limits.wall_seconds, float(command.timeout_seconds))
        limits = dataclasses.replace(self._limits, wall_seconds=wall)
        argv = ["sh", "-c", command.command]
        return await self._sandboxed(spec, sandbox, argv, workdir, variables, "command", limits=limits)

    # -- plumbing --------------------------------------------------------------------------------------

    async def _sandboxed(
        self,
        spec: RunSpec,
        sandbox: Sandbox,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        phase: str,
        *,
        limits: Limits | None = None,
    ) -> ProcessResult:
        """One sandboxed command, listed in `active` while it runs; raises ExecutionCancelled if stopped."""
        run_id = uuid.uuid4().hex[:12]
        active = ActiveExecution(
            run_id, spec.execution_id, shlex.join(argv), sandbox.name, datetime.now(UTC), phase
        )
        self.active[run_id] = active
        EXECUTIONS_ACTIVE.inc()
        try:
            process = await sandbox.run(
                argv, workdir=workdir, env=env, limits=limits or self._limits, cancel=active.cancel
            )
        finally:
            del self.active[run_id]
            EXECUTIONS_ACTIVE.dec()
        if process.cancelled:
            raise ExecutionCancelled(spec.execution_id)
        return process

    @contextlib.asynccontextmanager
    async def _worktree(self, spec: RunSpec, mirror: Path, purpose: str) -> AsyncIterator[Path]:
        """A fresh worktree of the base commit, removed afterwards."""
        path = self._git.root / "runs" / f"{spec.execution_id}-{uuid.uuid4().hex[:12]}-{purpose}"
        workdir = await self._git.worktree(mirror, path, spec.base_commit)
        try:
            yield workdir
        finally:
            await self._git.remove_worktree(mirror, workdir)

    async def _dependency_files(self, toolchain: Toolchain, where: Path, commit: str) -> dict[str, bytes]:
        """The toolchain's dependency files with their contents: at `commit` of a mirror, or (commit "")
        in a worktree's index, which `apply --index` updated. Both read through git, so they compare."""
        git_dir = ["--git-dir", str(where)] if commit else ["-C", str(where)]
        # Every path, not only the root's: patterns may name subdirectories (requirements/*.txt).
        if commit:
            listing = await self._git.run(*git_dir, "ls-tree", "-r", "-z", "--name-only", commit)
        else:
            listing = await self._git.run(*git_dir, "ls-files", "-z")
        names = [name for name in listing.split("\0") if name]
        files: dict[str, bytes] = {}
        overrides = [OVERRIDES_FILE] if OVERRIDES_FILE in names else []
        for name in [*toolchain.dependency_names(names), *overrides]:
            content = await self._git.run(*git_dir, "show", f"{commit}:{name}")
            files[name] = content.encode()
        return files
