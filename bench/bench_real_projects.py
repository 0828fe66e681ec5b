"""The platform on real projects nobody here wrote: does it set up and run their own test suites?

Each project of `bench/real_projects.toml` (a pinned release of a real Python, npm, Go or Rust project) is
downloaded once into `.service-feature/bench-projects/` (PyPI sdists with `pip download`, npm tarballs with
`npm pack`, Go modules and Rust crates from Debian's `golang-*-dev` / `librust-*-dev` packages, installed with
`apt-get` when missing), committed as the only commit of a bare git repository (its `.gitignore` applies,
as in the project's own repository), and handed to the **whole platform**, embedded in this process
(gateway, worker, executor, reviewer; bubblewrap sandbox, networked setup, tests offline) with a scripted
agent that only adds a `NOTES.md` and finishes. Nothing is configured per project: no test command, no
dependency hint. Two features are submitted per project, one after the other: the first pays for the
dependency setup and the base commit's run, the second reuses both from the cache.

A project **passes** when its own suite ran with at least one test passed and nothing failed that did not
already fail on the base commit (the platform's `succeeded`). Everything is read back through the HTTP API
(status, preparation, test summary, failure reason), except the executor's output tail, which the API does
not return: it is read from the platform's database, for the triage column and the JSON report.

Ratio column: for the projects marked `by_hand`, the same suite is also run the way a person would, outside
any sandbox (python: a clean venv, `pip install`, `pytest`; npm: `npm install`, `npm test`; go: `go test
./...`; rust: `cargo test --offline`), and `ratio` is the platform's test run time (first feature, patched
run) over that plain run's time.

The project list has a held-out part (`held_out = true`, chosen before any result was seen), reported
separately and never used to tune the platform: the totals print tuned and held-out figures apart.

    .venv/bin/python bench/bench_real_projects.py [--only NAME[,NAME…]] [--language python|npm|go|rust]
        [--held-out | --tuned] [--jobs 1] [--by-hand marked|all|none] [--one-feature] [--json out.json]
        [--order-by earlier.json --deadline MINUTES]   # time-boxed: quickest first, start none after
    .venv/bin/python bench/bench_real_projects.py --reprint out.json   # the table of an earlier report

The whole list takes about an hour on two shared cores (attrs, pyparsing and multidict alone take a quarter
of it); `--json` keeps every run's output tail, the platform's setup steps and its failure reason.

Needs bubblewrap, node/npm, go and cargo for their languages, root for `apt-get` (first run only), and the
package registries (for the sources on the first run; for the platform's own dependency setup every run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROJECTS_FILE = ROOT / "bench" / "real_projects.toml"
CACHE = ROOT / ".service-feature" / "bench-projects"
DEBIAN_GO = Path("/usr/share/gocode/src")
DEBIAN_RUST = Path("/usr/share/cargo/registry")
LANGUAGES = {"python": "python", "npm": "javascript", "go": "go", "rust": "rust"}
FINAL = {"delivered", "failed", "rejected", "cancelled", "awaiting_approval"}
FEATURE_TIMEOUT_SECONDS = 1800.0
FETCH_TIMEOUT_SECONDS = 600
BY_HAND_TIMEOUT_SECONDS = 900
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}
NOTES = "# Notes\n\nA file added by the real-projects bench's scripted agent.\n"


# -- the project list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """One pinned release. `package` is the registry's (or Debian's) package name; `path` is where a Debian
    package keeps the source (an import path under /usr/share/gocode/src, a crate dir under
    /usr/share/cargo/registry). `by_hand` lists the install arguments of the plain run (python: pip's)."""

    name: str
    language: str  # python | npm | go | rust
    package: str
    version: str
    held_out: bool = False
    categories: tuple[str, ...] = ()
    path: str = ""
    by_hand: tuple[str, ...] | None = None

    @property
    def platform_language(self) -> str:
        return LANGUAGES[self.language]

    @property
    def set_name(self) -> str:
        return "held-out" if self.held_out else "tuned"


def load_projects(path: Path) -> list[Project]:
    data = tomllib.loads(path.read_text())
    projects = []
    for entry in data["project"]:
        by_hand = entry.get("by_hand")
        projects.append(
            Project(
                name=entry["name"],
                language=entry["language"],
                package=entry.get("package", entry["name"]),
                version=entry["version"],
                held_out=bool(entry.get("held_out", False)),
                categories=tuple(entry.get("categories", ())),
                path=entry.get("path", ""),
                by_hand=tuple(by_hand) if by_hand is not None else None,
            )
        )
    names = [p.name for p in projects]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"{path}: duplicate project names {sorted(duplicates)}")
    return projects


# -- sources ---------------------------------------------------------------------------------------------


def run(argv: Sequence[str], cwd: Path | None = None, timeout: float = FETCH_TIMEOUT_SECONDS) -> str:
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **GIT_IDENTITY},
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(argv)}` exit {done.returncode}: {(done.stderr or done.stdout)[-2000:]}"
        )
    return done.stdout


def host_python() -> str:
    """An interpreter with pip for `pip download` (the platform's own venv may have none)."""
    for candidate in (sys.executable, shutil.which("python3"), shutil.which("python")):
        if (
            candidate
            and subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True).returncode == 0
        ):
            return candidate
    raise SystemExit("no python with pip found for `pip download`")


def extract(archive: Path, destination: Path) -> None:
    """Unpack an sdist or npm tarball into `destination`, dropping its single top directory."""
    scratch = destination.with_name(destination.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(scratch)
    else:
        with tarfile.open(archive) as bundle:
            bundle.extractall(scratch, filter="data")
    entries = list(scratch.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch
    shutil.rmtree(destination, ignore_errors=True)
    top.rename(destination)
    shutil.rmtree(scratch, ignore_errors=True)


def canonical(name: str) -> str:
    """A file or package name compared as PyPI does: case and runs of `-_.` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def debian_install(project: Project) -> None:
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", f"{project.package}={project.version}"])


def fetch(project: Project, cache: Path) -> Path:
    """The project's source tree, downloaded (or copied from a Debian package) once into the cache."""
    tree = cache / "src" / f"{project.language}-{project.name}-{project.version}"
    if tree.is_dir():
        return tree
    downloads = cache / "downloads" / project.language
    downloads.mkdir(parents=True, exist_ok=True)
    if project.language == "python":
        wanted = {canonical(f"{project.package}-{project.version}{suffix}") for suffix in (".tar.gz", ".zip")}
        found = [f for f in downloads.iterdir() if canonical(f.name) in wanted]
        if not found:
            pip = [host_python(), "-m", "pip", "download", "--quiet", "--no-deps"]
            run(
                [
                    *pip,
                    "--no-binary",
                    project.package,
                    "-d",
                    str(downloads),
                    f"{project.package}=={project.version}",
                ]
            )
            found = [f for f in downloads.iterdir() if canonical(f.name) in wanted]
        if not found:
            raise RuntimeError(f"pip download left no sdist of {project.package} {project.version}")
        extract(found[0], tree)
    elif project.language == "npm":
        name = f"{project.package.lstrip('@').replace('/', '-')}-{project.version}.tgz"
        if not (downloads / name).is_file():
            run(["npm", "pack", "--silent", f"{project.package}@{project.version}"], cwd=downloads)
        extract(downloads / name, tree)
    else:
        source = (DEBIAN_GO if project.language == "go" else DEBIAN_RUST) / project.path
        if not source.is_dir():
            debian_install(project)
        ignore = shutil.ignore_patterns(".cargo-checksum.json")  # Debian's, not the crate's
        scratch = tree.with_name(tree.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(source, scratch, symlinks=False, ignore=ignore)
        scratch.rename(tree)
    return tree


def create_origin(tree: Path, origin: Path) -> Path:
    """A bare repository at `origin` whose `main` holds the source tree in one commit (its .gitignore
    applies, as in the project's own repository)."""
    work = origin.with_name(origin.name + ".work")
    shutil.copytree(tree, work, symlinks=True)
    run(["git", "init", "-q", "--bare", "--initial-branch=main", str(origin)])
    run(["git", "init", "-q", "--initial-branch=main"], cwd=work)
    run(["git", "add", "-A"], cwd=work)
    run(["git", "commit", "-q", "--no-verify", "-m", "The released source"], cwd=work)
    run(["git", "push", "-q", str(origin), "main:main"], cwd=work)
    shutil.rmtree(work, ignore_errors=True)
    return origin


def origin_path(project: Project, work: Path) -> Path:
    """Where the project's repository lives: a Go module at its import path (`…/github.com/pkg/errors.git`),
    as its real address would have it, so that a module without go.mod can be told its path from the
    repository's address; anything else at its name."""
    return work / f"{project.path if project.language == 'go' else project.name}.git"


# -- results ---------------------------------------------------------------------------------------------


@dataclass
class FeatureRun:
    execution_id: str = ""
    status: str = ""
    wall_seconds: float = 0.0
    test_seconds: float | None = None
    setup_seconds: float | None = None
    environment_cached: bool | None = None
    baseline_cached: bool | None = None
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0
    succeeded: bool = False
    exit_code: int | None = None
    command: str = ""
    failure_reason: str | None = None
    preparation: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    classification: dict[str, int] = field(default_factory=dict)
    environment: dict[str, Any] | None = None
    output_tail: str = ""


@dataclass
class ProjectResult:
    name: str
    language: str
    version: str
    set: str
    categories: list[str]
    error: str | None = None
    first: FeatureRun | None = None
    second: FeatureRun | None = None
    by_hand_seconds: float | None = None
    by_hand_install_seconds: float | None = None
    by_hand_outcome: str | None = None
    environments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.first is not None and self.first.succeeded

    @property
    def setup(self) -> str:
        """The dependency setup of the first feature: installed / cached / none (nothing to install) /
        failed, as the platform's preparation reports it (older platforms: guessed from the test run)."""
        run_ = self.first
        if run_ is None:
            return "?"
        if run_.preparation and run_.preparation.get("setup"):
            return str(run_.preparation["setup"]).replace("not needed", "none")
        if run_.command == "setup" or "environment:" in (run_.failure_reason or "")[:40]:
            return "failed"
        if run_.setup_seconds is None and run_.environment_cached is None:
            return "?"
        return "installed" if (run_.setup_seconds or 0) > 0 or run_.environment_cached else "none"

    @property
    def ratio(self) -> float | None:
        if self.first is None or not self.first.test_seconds or not self.by_hand_seconds:
            return None
        return self.first.test_seconds / self.by_hand_seconds

    def reason(self) -> str:
        if self.error:
            return self.error.splitlines()[0][:160]
        if self.first is None:
            return ""
        if self.passed:
            failing = self.first.failed + self.first.errored
            return f"({failing} already failing on the base)" if failing else ""
        return short_reason(self.first)


_CAUSES = (
    re.compile(r"(ModuleNotFoundError: No module named [^\s]+)"),
    re.compile(r"(ImportError: .{0,120})"),
    re.compile(r"(E\s+fixture '[^']+' not found)"),
    re.compile(r"(error: unrecognized arguments: .{0,100})"),
    re.compile(r"(ERROR: (?:Could not|No matching|Package|Ignored|Failed).{0,140})"),
    re.compile(r"(error: subprocess-exited-with-error|error: metadata-generation-failed)"),
    re.compile(r"(npm ERR! .{0,140})"),
    re.compile(r"(Error: Cannot find module [^\s]+)"),
    re.compile(r"(sh: \d+: [^\n]{0,80}: not found)"),
    re.compile(r"(go: [^\n]{0,160})"),
    re.compile(r"(cannot find package [^\n]{0,120})"),
    re.compile(r"(error(?:\[E\d+\])?: [^\n]{0,160})"),
    re.compile(r"(no tests ran[^\n]{0,80})"),
)


def short_reason(run_: FeatureRun) -> str:
    """One line a person can act on: the first recognised cause in the output, else the platform's reason."""
    text = "\n".join(
        part
        for part in (
            str((run_.preparation or {}).get("untestable") or ""),
            str((run_.preparation or {}).get("log_tail") or ""),
            run_.output_tail,
            run_.failure_reason or "",
        )
        if part
    )
    for cause in _CAUSES:
        if match := cause.search(text):
            return " ".join(match.group(1).split())[:160]
    if run_.failed and run_.baseline is not None:
        return f"{run_.failed} failed ({run_.classification})"
    lines = [line.strip() for line in (run_.failure_reason or text).splitlines() if line.strip()]
    return (lines[-1] if lines else run_.status)[:160]


# -- the platform ----------------------------------------------------------------------------------------


def scripts(directory: Path) -> Path:
    """The scripted agent: write NOTES.md, finish."""
    turns = [
        {
            "text": "Adding the notes file.",
            "tool_calls": [{"name": "write_file", "arguments": {"path": "NOTES.md", "content": NOTES}}],
        },
        {"text": "", "tool_calls": [{"name": "finish", "arguments": {"summary": "added NOTES.md"}}]},
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.json").write_text(json.dumps({"turns": turns, "latency_ms": 0}))
    return directory


@contextlib.asynccontextmanager
async def embedded_platform(
    data: Path, args: argparse.Namespace
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    from service_feature.auth import generate_key
    from service_feature.config import CommonSettings
    from service_feature.logs import configure_logging
    from service_feature.runtime import Platform

    admin_key = generate_key()
    os.environ.update(
        SF_DATA_DIR=str(data / "platform"),
        ALLOW_LOCAL_REPOSITORIES="true",
        LLM_PROVIDER="scripted",
        LLM_SCRIPT=str(scripts(data / "scripts")),
        SF_ADMIN_KEY=admin_key,
        SERVER_ADDRESS="127.0.0.1:0",
        MAX_ATTEMPTS="1",
        SANDBOX_TYPE="bwrap",
        SF_TEST_TIMEOUT_SECONDS=str(args.timeout),
        MAX_CONCURRENT_EXECUTIONS=str(max(args.jobs, 1)),
        SF_WORKER_CONCURRENCY=str(max(args.jobs, 1)),
        LOG_LEVEL="ERROR",
    )
    configure_logging("ERROR")  # the worker warns per failed feature; the table says it
    platform = Platform(settings=CommonSettings())
    await platform.start()
    try:
        url = f"http://127.0.0.1:{platform.bound_port}"
        headers = {"Authorization": f"Bearer {admin_key}"}
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
            yield client, platform
    finally:
        await platform.stop()


async def executor_result(platform: Any, execution_id: str) -> dict[str, Any] | None:
    """The executor's stored result of the feature's last test run (the API has no route for it)."""
    from sqlalchemy import select

    from service_feature.store.tables import Execution

    database = platform.database
    if database is None:
        return None
    async with database.transaction() as session:
        rows = await session.execute(
            select(Execution).where(Execution.execution_id == execution_id).order_by(Execution.id.desc())
        )
        execution = rows.scalars().first()
        return dict(execution.result) if execution is not None else None


async def feature(
    client: httpx.AsyncClient, platform: Any, project: Project, origin: Path, number: int
) -> FeatureRun:
    request = {
        "repository_url": str(origin),
        "branch": "main",
        "specification": {
            "title": f"Add NOTES.md ({number})",
            "description": "Add a NOTES.md file at the repository root.",
            "requirements": ["NOTES.md exists at the repository root"],
            "target_files": ["NOTES.md"],
            "language": project.platform_language,
        },
    }
    started = time.perf_counter()
    response = await client.post("/api/v1/features", json=request)
    response.raise_for_status()
    execution_id = response.json()["execution_id"]
    async with asyncio.timeout(FEATURE_TIMEOUT_SECONDS):
        while True:
            response = await client.get(f"/api/v1/features/{execution_id}")
            response.raise_for_status()
            body = response.json()
            if body["status"] in FINAL:
                break
            await asyncio.sleep(0.25)
    outcome = FeatureRun(
        execution_id=execution_id,
        status=body["status"],
        wall_seconds=time.perf_counter() - started,
        failure_reason=body.get("failure_reason"),
        preparation=body.get("preparation"),
    )
    summary = body.get("test_summary") or {}
    outcome.succeeded = bool(summary.get("succeeded"))
    outcome.command = str(summary.get("command", ""))
    outcome.exit_code = summary.get("exit_code")
    for name in ("passed", "failed", "errored", "skipped"):
        setattr(outcome, name, int(summary.get(name) or 0))
    if summary:
        outcome.test_seconds = float(summary.get("duration_seconds") or 0.0)
    result = await executor_result(platform, execution_id)
    if result is not None:
        environment = result.get("environment") or {}
        outcome.environment = environment or None
        outcome.setup_seconds = environment.get("setup_seconds")
        outcome.environment_cached = environment.get("cached")
        baseline = result.get("baseline")
        if baseline:
            outcome.baseline = {k: v for k, v in baseline.items() if k != "output_tail"}
            outcome.baseline_cached = baseline.get("cached")
        outcome.classification = {k: len(v) for k, v in (result.get("classification") or {}).items() if v}
        outcome.output_tail = str(result.get("output_tail", ""))[-4000:]
        outcome.command = outcome.command or str(result.get("command", ""))
    preparation = outcome.preparation or {}
    if preparation:  # the setup ran there, before the model; the test run found it cached
        outcome.setup_seconds = preparation.get("setup_seconds", outcome.setup_seconds)
        outcome.environment_cached = preparation.get("environment_cached", outcome.environment_cached)
    if not summary and preparation.get("baseline"):  # stopped before the model: the base's counts
        base = preparation["baseline"]
        outcome.baseline = base
        outcome.exit_code = base.get("exit_code")
        for name in ("passed", "failed", "errored", "skipped"):
            setattr(outcome, name, int(base.get(name) or 0))
    return outcome


# -- by hand ---------------------------------------------------------------------------------------------


def by_hand(project: Project, tree: Path) -> tuple[float | None, float | None, str]:
    """(install seconds, test seconds, outcome) of the plain run outside any sandbox, in a scratch copy."""
    with tempfile.TemporaryDirectory(prefix="sf-bench-hand-") as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(tree, work, symlinks=True)
        env = {**os.environ, "CI": "true"}
        install: list[list[str]] = []
        if project.language == "python":
            python = host_python()
            venv = Path(scratch) / "venv"
            extra = list(project.by_hand or ("-e", "."))
            install = [
                [python, "-m", "venv", str(venv)],
                [str(venv / "bin/python"), "-m", "pip", "install", "-q", "pytest", *extra],
            ]
            test = [str(venv / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        elif project.language == "npm":
            install = [["npm", "install", "--no-audit", "--no-fund", "--silent"]]
            test = ["npm", "test"]
        elif project.language == "go":
            env |= {"GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOCACHE": f"{scratch}/gocache"}
            env |= {"GOPATH": f"{scratch}/gopath", "GOTOOLCHAIN": "local"}
            test = ["go", "test", "./..."]
        else:
            env |= {"CARGO_TARGET_DIR": f"{scratch}/target"}
            test = ["cargo", "test", "--offline"]
        started = time.perf_counter()
        for argv in install:
            done = subprocess.run(
                argv, cwd=work, env=env, capture_output=True, text=True, timeout=BY_HAND_TIMEOUT_SECONDS
            )
            if done.returncode != 0:
                return None, None, f"install failed: {(done.stderr or done.stdout).strip()[-300:]}"
        installed = time.perf_counter() - started if install else None
        started = time.perf_counter()
        try:
            done = subprocess.run(
                test, cwd=work, env=env, capture_output=True, text=True, timeout=BY_HAND_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            return installed, None, "timed out"
        seconds = time.perf_counter() - started
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        return installed, seconds, f"exit {done.returncode}: {lines[-1].strip()[:160] if lines else ''}"


# -- driving ---------------------------------------------------------------------------------------------


async def bench_project(
    project: Project,
    client: httpx.AsyncClient,
    platform: Any,
    work: Path,
    args: argparse.Namespace,
) -> ProjectResult:
    result = ProjectResult(
        project.name, project.language, project.version, project.set_name, list(project.categories)
    )
    try:
        tree = await asyncio.to_thread(fetch, project, args.cache)
        origin = origin_path(project, work)
        origin.parent.mkdir(parents=True, exist_ok=True)
        origin = await asyncio.to_thread(create_origin, tree, origin)
        result.first = await feature(client, platform, project, origin, 1)
        if not args.one_feature:
            result.second = await feature(client, platform, project, origin, 2)
        result.environments = await asyncio.to_thread(environments_of, tree, work.parent / "platform")
        wanted = args.by_hand == "all" or (args.by_hand == "marked" and project.by_hand is not None)
        if wanted:
            install, seconds, outcome = await asyncio.to_thread(by_hand, project, tree)
            result.by_hand_install_seconds, result.by_hand_seconds, result.by_hand_outcome = (
                install,
                seconds,
                outcome,
            )
    except Exception as error:  # one project's trouble must not end the bench
        result.error = f"{type(error).__name__}: {error}"
    print_row(result)
    return result


def environments_of(tree: Path, platform_data: Path) -> list[dict[str, Any]]:
    """The manifests of the environments the platform built from this project's dependency files (which
    files it read, the setup steps it ran, its notes), found by the files' hashes: for the triage."""
    found = []
    for manifest in sorted(platform_data.glob("**/cache/envs/*/manifest.json")):
        try:
            data = json.loads(manifest.read_text())
            files = data.get("files") or {}
            if files and all(
                (tree / name).is_file() and hashlib.sha256((tree / name).read_bytes()).hexdigest() == digest
                for name, digest in files.items()
            ):
                found.append(
                    {k: data.get(k) for k in ("toolchain", "files", "setup", "notes", "setup_seconds")}
                )
        except (OSError, ValueError):
            continue
    return found


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:6.1f}"


HEADER = (
    f"{'project':<20} {'lang':<6} {'set':<8} {'setup':<9} {'pass':>5} {'fail':>4} {'err':>4} {'ok':<3} "
    f"{'1st s':>6} {'2nd s':>6} {'test s':>6} {'hand s':>6} {'ratio':>5}  reason"
)


def print_row(result: ProjectResult) -> None:
    first, second = result.first, result.second
    ratio = result.ratio
    counts = (first.passed, first.failed, first.errored) if first else (0, 0, 0)
    print(
        f"{result.name[:20]:<20} {result.language:<6} {result.set:<8} {result.setup:<9} "
        f"{counts[0]:>5} {counts[1]:>4} {counts[2]:>4} "
        f"{'yes' if result.passed else 'no':<3} {fmt(first.wall_seconds if first else None)} "
        f"{fmt(second.wall_seconds if second else None)} {fmt(first.test_seconds if first else None)} "
        f"{fmt(result.by_hand_seconds)} {'-' if ratio is None else f'{ratio:5.2f}':>5}  {result.reason()}",
        flush=True,
    )


def rate(results: Iterable[ProjectResult]) -> str:
    chosen = [r for r in results if not (r.error or "").startswith("not run")]
    if not chosen:
        return "  -  (0 projects)"
    passed = sum(r.passed for r in chosen)
    return f"{passed:>2}/{len(chosen):<2} ({100 * passed / len(chosen):5.1f}%)"


def median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def print_summary(results: list[ProjectResult]) -> None:
    print("\npass rate (own suite green, or failing only where the base already failed)")
    for set_name in ("tuned", "held-out"):
        chosen = [r for r in results if r.set == set_name]
        per_language = "  ".join(
            f"{language} {rate(r for r in chosen if r.language == language)}" for language in LANGUAGES
        )
        print(f"  {set_name:<9} {rate(chosen)}    {per_language}")
    print(f"  {'all':<9} {rate(results)}")
    if carrying := [r.name for r in results if r.passed and r.first and (r.first.failed or r.first.errored)]:
        print(f"  passing with failures the base already had: {', '.join(carrying)}")
    if not_run := [r.name for r in results if (r.error or "").startswith("not run")]:
        print(f"  not run (deadline), not counted: {', '.join(not_run)}")
    pairs = [
        (r.first.wall_seconds, r.second.wall_seconds)
        for r in results
        if r.passed and r.second and r.second.status in FINAL  # a run that stopped early says little
    ]
    if pairs:
        first = median([p[0] for p in pairs])
        second = median([p[1] for p in pairs])
        assert first is not None
        assert second is not None
        print(
            f"\nfeature wall time, median over the {len(pairs)} passing projects: "
            f"first {first:.1f} s → second {second:.1f} s "
            f"({first / second:.1f}x: setup and the base's run come from the cache)"
        )
    ratios = [r.ratio for r in results if r.ratio is not None]
    if ratios:
        middle = median(ratios)
        listed = ", ".join(f"{r.name} {r.ratio:.2f}" for r in results if r.ratio is not None)
        print(f"platform test run / plain run by hand: median {middle:.2f}x ({listed})")


def working_tree() -> dict[str, str]:
    """Which platform code ran: HEAD and a digest of the uncommitted changes (the tree moves under us)."""
    head = run(["git", "rev-parse", "HEAD"], cwd=ROOT).strip()
    diff = subprocess.run(["git", "diff", "HEAD"], cwd=ROOT, capture_output=True, check=False).stdout
    return {"head": head, "uncommitted_sha256": hashlib.sha256(diff).hexdigest()[:16]}


def load_report(path: Path) -> list[ProjectResult]:
    """A `--json` report back as results, to print its table again (`--reprint`)."""
    names = {f.name for f in fields(ProjectResult)}
    run_names = {f.name for f in fields(FeatureRun)}
    results = []
    for entry in json.loads(path.read_text())["projects"]:
        result = ProjectResult(**{k: v for k, v in entry.items() if k in names - {"first", "second"}})
        for which in ("first", "second"):
            if entry.get(which):
                setattr(
                    result, which, FeatureRun(**{k: v for k, v in entry[which].items() if k in run_names})
                )
        results.append(result)
    return results


def reprint(path: Path) -> int:
    results = load_report(path)
    print(HEADER)
    for result in results:
        print_row(result)
    print_summary(results)
    return 0


async def main(args: argparse.Namespace) -> int:
    if args.reprint:
        return reprint(args.reprint)
    projects = load_projects(args.projects)
    if args.only:
        wanted = {name.strip() for value in args.only for name in value.split(",") if name.strip()}
        unknown = wanted - {p.name for p in projects}
        if unknown:
            raise SystemExit(f"unknown project(s): {sorted(unknown)}")
        projects = [p for p in projects if p.name in wanted]
    if args.language:
        projects = [p for p in projects if p.language == args.language]
    if args.held_out:
        projects = [p for p in projects if p.held_out]
    if args.tuned:
        projects = [p for p in projects if not p.held_out]
    if not projects:
        raise SystemExit("no project selected")
    if args.order_by:  # quickest first by an earlier report, so a deadline leaves out the slow ones
        earlier = {r.name: r.first.wall_seconds if r.first else 0.0 for r in load_report(args.order_by)}
        projects.sort(key=lambda p: earlier.get(p.name, float("inf")))
    deadline = time.monotonic() + args.deadline * 60 if args.deadline else None
    args.cache.mkdir(parents=True, exist_ok=True)
    tree = working_tree()
    data = Path(tempfile.mkdtemp(prefix="sf-bench-real-"))
    print(f"{len(projects)} projects; platform data in {data}; sources cached in {args.cache}")
    print(f"platform code: HEAD {tree['head'][:12]}, uncommitted changes {tree['uncommitted_sha256']}\n")
    print(HEADER)
    started = time.perf_counter()
    slots = asyncio.Semaphore(max(args.jobs, 1))
    try:
        async with embedded_platform(data, args) as (client, platform):

            async def one(project: Project) -> ProjectResult:
                async with slots:
                    if deadline is not None and time.monotonic() > deadline:
                        skipped = ProjectResult(
                            project.name,
                            project.language,
                            project.version,
                            project.set_name,
                            list(project.categories),
                            error="not run: --deadline passed",
                        )
                        print_row(skipped)
                        return skipped
                    return await bench_project(project, client, platform, data / "origins", args)

            results = await asyncio.gather(*(one(p) for p in projects))
    finally:
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    print_summary(results)
    print(f"\n{len(results)} projects in {time.perf_counter() - started:.0f} s")
    if args.json:
        report = {
            "tree": tree,
            "projects": [
                {**asdict(r), "passed": r.passed, "setup": r.setup, "ratio": r.ratio, "reason": r.reason()}
                for r in results
            ],
        }
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"report written to {args.json}")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--projects", type=Path, default=PROJECTS_FILE, help="the project list (TOML)")
    parser.add_argument("--only", action="append", help="project name(s), comma-separated; repeatable")
    parser.add_argument("--language", choices=sorted(LANGUAGES))
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--held-out", action="store_true", help="only the held-out projects")
    chosen.add_argument("--tuned", action="store_true", help="only the tuned projects")
    parser.add_argument("--jobs", type=int, default=1, help="projects at a time (default 1)")
    parser.add_argument("--by-hand", choices=("marked", "all", "none"), default="marked")
    parser.add_argument("--one-feature", action="store_true", help="skip the second (cached) feature")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per sandboxed command")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where sources are downloaded")
    parser.add_argument("--keep", action="store_true", help="keep the platform's data dir afterwards")
    parser.add_argument("--json", type=Path, help="write the full report (with output tails) here")
    parser.add_argument("--deadline", type=float, help="minutes: start no project after that (not counted)")
    parser.add_argument("--order-by", type=Path, help="run the quickest first, by this earlier --json report")
    parser.add_argument("--reprint", type=Path, help="print the table of a --json report; run nothing")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse_args())))
