"""The dependency setup step: install a repository's dependencies once per dependency set, in a sandbox that
may reach the package registries, and keep the result in a cache that test runs only read.

Why this shape:

* **Separate, networked, on the base.** Installing needs the registries; the tests (code an LLM wrote) must
  not have a network. So setup runs in its own sandbox (`network=True`) on the *base* commit's dependency
  files, and the test step, without network, gets its result read-only: a test cannot poison the
  environment the next feature will use.
* **Cached by what decides it.** The key is sha256 of the language, the toolchain's version and every
  dependency file's name and contents: the next feature on the same repository (or any repository with the
  same lock file) reuses it; an upgraded toolchain or a changed lock file builds a new one.
* **Same paths in both steps.** Setup writes into `/workspace/.service-feature-env` (the "home") of a fresh
  base checkout, and leaves `kept` dirs (`node_modules`) in the workspace; both are then moved into the cache
  entry. A test workspace gets links at the same places pointing into the entry, which the sandbox binds
  read-only at its host path, so paths baked in during setup (venv scripts, editable installs of
  `/workspace`, npm's links) hold again. Nothing is copied per run.
* **What setup generates in the checkout goes with it.** An editable install builds C extensions in place
  (`pkg/_ext.*.so`), hatch-vcs and setuptools-scm write `version.py` beside the code, a `prepare` script
  writes `dist/`: the files setup added to the checkout (found by walking it before and after, never
  following links and skipping what cannot be read) are moved into the entry's `generated/`, and each test
  workspace gets a link per file where it was, unless the checkout (or the patch) has its own there.
* **Concurrent setups of one key build it once**: an `flock` per entry (replicas may share the volume), the
  entry built under `<entry>.partial` and renamed into place, so an entry that exists is complete. A failed
  setup is not cached (a registry hiccup must not stick).

Layout under the cache root (`<executor workspace>/cache`): `envs/<language>-<key>/{home,node_modules,
manifest.json}`, `envs/<…>.lock`, `downloads/<name>` (a toolchain's download cache, uv's, kept across setups
and bound read-write into the setup sandbox only: a test never sees it), and `baselines/<key>.json` (the
runner's base-commit results, `JsonStore`). The download cache is shared by every repository's setup; what a
setup writes there can reach another's environment, the price of not downloading the same wheels again.

The bubblewrap sandbox mounts a private tmpfs over `/dev/shm`, so a cache there would be invisible to the
tests: such a cache root is refused with a message rather than failing obscurely (one under `/tmp` works:
the sandbox binds it on top of its private `/tmp`). The Docker sandbox binds the entry, the interpreter and
uv at their host paths the same way (system dirs excepted: those are the image's).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from service_feature.executor.overrides import OVERRIDES_FILE, InvalidOverrides, read_overrides
from service_feature.executor.sandbox.base import ProcessResult, Sandbox
from service_feature.executor.sandbox.bwrap import WORKSPACE, BwrapSandbox
from service_feature.executor.sandbox.docker import DockerSandbox
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.toolchains import ENV_DIR, DependencyFiles, SetupStep, Toolchain

_HIDDEN_BY_SANDBOX = (Path("/dev/shm"),)  # noqa: S108 - checked against, never used
GENERATED = "generated"
# Not kept from what setup left in the checkout: build intermediates (object files; the built result is in
# place beside the code) and caches, at any depth, and the root's `build/`.
_NOT_GENERATED = frozenset(
    {".git", "__pycache__", ".eggs", ".tox", ".nox", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
)
_NOT_GENERATED_AT_ROOT = frozenset({"build"})
# Part of every key: an entry laid out by an older executor (without `generated/`) is rebuilt, not reused.
_ENTRY_LAYOUT = "entry layout 2"
_OUTPUT_TAIL = 4000
_NOTE_TAIL = 1000
_log = structlog.get_logger()

# The runner's way of running one sandboxed command: it registers the run (so it can be cancelled) and
# raises when it was. Arguments: sandbox, argv, workdir, environment, what the run is (for operators).
RunCommand = Callable[[Sandbox, Sequence[str], Path, Mapping[str, str], str], Awaitable[ProcessResult]]
# A fresh checkout to install in (the base commit, or base + patch when dependency changes are allowed).
Checkout = Callable[[], AbstractAsyncContextManager[Path]]


class SetupFailed(Exception):
    """Installing the dependencies failed or cannot start; the message says which step and command, and
    ends with the command's output."""


@dataclass(frozen=True)
class Environment:
    """An installed environment (or none: nothing needed installing) as test runs use it. `bound`: host
    paths it needs besides its entry (an interpreter); `setup`: what was run to make it and `notes`: what a
    user should know about it (a fallback taken), both from its manifest."""

    key: str
    entry: Path | None = None
    kept: tuple[str, ...] = ()
    cached: bool = False
    setup_seconds: float = 0.0
    bound: tuple[Path, ...] = ()
    setup: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    generated: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {
            "key": self.key[:16],
            "installed": self.entry is not None,
            "cached": self.cached,
            "setup_seconds": round(self.setup_seconds, 3),
        }
        if self.setup:
            described["setup"] = list(self.setup)
        if self.notes:
            described["notes"] = list(self.notes)
        if self.generated:
            described["generated_files"] = len(self.generated)
        return described

    def home(self, workspace: str) -> str | None:
        """The home as a sandboxed command sees it, for the toolchain's variables."""
        return f"{workspace}/{ENV_DIR}" if self.entry else None

    def readonly_paths(self) -> tuple[Path, ...]:
        return (self.entry, *self.bound) if self.entry else ()

    def linked_paths(self) -> list[str]:
        """The workspace paths `link_into` makes: none of them is the repository's own change."""
        if self.entry is None:
            return []
        return [ENV_DIR, *self.kept, *self.generated]

    def link_into(self, workdir: Path) -> None:
        """Point the workspace's home and kept dirs at the cache entry (replacing whatever is there). A
        kept dir is a real directory of links, one per entry, rather than one link: tools write beside
        the packages (nyc, babel and eslint cache in `node_modules/.cache`), which the read-only entry
        would refuse; node resolves each link to the entry, where the packages' own dependencies are."""
        if self.entry is None:
            return
        for name, target in [(ENV_DIR, self.entry / "home")] + [(k, self.entry / k) for k in self.kept]:
            if not target.exists():
                continue
            link = workdir / name
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                shutil.rmtree(link)
            if name == ENV_DIR:
                link.symlink_to(target, target_is_directory=True)
            else:
                link.mkdir()
                for entry in target.iterdir():
                    _link_entry(link / entry.name, entry)
        self._link_generated(workdir)

    def _link_generated(self, workdir: Path) -> None:
        """A link per file setup generated in the checkout, where setup left it; a path the workspace has
        already (the patch wrote it) or cannot have (a file where a directory was) is left alone."""
        assert self.entry is not None
        for name in self.generated:
            link = workdir / name
            if link.is_symlink() or link.exists():
                continue
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(self.entry / GENERATED / name)
            except OSError:
                _log.warning("setup.generated_file_not_linked", path=name)


def _link_entry(link: Path, entry: Path) -> None:
    """A link to `entry`, or a copy of it when it is itself a relative link out of its directory: an npm
    workspace's member (`node_modules/a -> ../packages/a`) must resolve to the test workspace's own
    checkout of the member, not to a path beside the cache entry, where there is none."""
    if entry.is_symlink():
        target = os.readlink(entry)
        if not os.path.isabs(target) and target.startswith(".."):
            link.symlink_to(target)
            return
    link.symlink_to(entry, target_is_directory=entry.is_dir())


def walk_files(root: Path, skipped: Callable[[str], bool] = lambda _: False) -> Iterator[str]:
    """The paths (relative, `/`-separated) of everything under `root` that is not a directory: files,
    links (never followed, so a `loop -> loop` link or one out of the tree is just an entry) and the like.
    A directory that cannot be listed (permissions, removed meanwhile) is left out, not an error: this walks
    a workspace that a project's own commands wrote. `skipped(path)` prunes a path and all below it."""
    pending = [""]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(root / directory) as scan:
                entries = list(scan)
        except OSError:
            continue
        for entry in entries:
            path = f"{directory}/{entry.name}" if directory else entry.name
            if skipped(path):
                continue
            try:
                is_directory = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_directory:
                pending.append(path)
            else:
                yield path


def dependency_key(language: str, version: str, files: DependencyFiles) -> str:
    digest = hashlib.sha256(f"{language}\0{version}\0".encode())
    for name in sorted(files):
        digest.update(f"{name}\0{len(files[name])}\0".encode())
        digest.update(files[name])
    return digest.hexdigest()


def changed_files(base: DependencyFiles, patched: DependencyFiles) -> list[str]:
    """Dependency files the patch added, removed or changed."""
    return sorted(name for name in {*base, *patched} if base.get(name) != patched.get(name))


def workspace_path(sandbox: Sandbox, workdir: Path) -> str:
    """Where a sandboxed command sees its workspace: /workspace, except without isolation."""
    return str(workdir) if isinstance(sandbox, ProcessSandbox) else WORKSPACE


def with_readonly(sandbox: Sandbox, paths: Sequence[Path]) -> Sandbox:
    """`sandbox`, also showing `paths` read-only: bwrap and Docker bind them; the process sandbox sees the
    host anyway."""
    if not isinstance(sandbox, BwrapSandbox | DockerSandbox) or not paths:
        return sandbox
    return sandbox.with_readonly(paths)


def with_writable(sandbox: Sandbox, paths: Sequence[Path]) -> Sandbox:
    """`sandbox`, also able to write `paths` (existing directories), as `with_readonly` decides."""
    if not isinstance(sandbox, BwrapSandbox | DockerSandbox) or not paths:
        return sandbox
    return sandbox.with_writable(paths)


def environment_key(toolchain: Toolchain, files: DependencyFiles) -> str:
    """The key of the environment these files get: the language, the toolchain's version, the setup
    commands, and the files that decide them (the toolchain's `key_files` and the override file)."""
    overrides_file = {name: files[name] for name in (OVERRIDES_FILE,) if name in files}
    identity = f"{_ENTRY_LAYOUT}\0{toolchain.version}\0{_recipe(toolchain, files)}"
    return dependency_key(
        toolchain.languages[0].value, identity, {**toolchain.key_files(files), **overrides_file}
    )


def _recipe(toolchain: Toolchain, files: DependencyFiles) -> str:
    """The setup commands these files get, as part of the key: when the platform learns to install a
    project differently, its environment is rebuilt rather than reused as the old commands left it."""
    if not toolchain.needs_setup(files):
        return ""
    steps = toolchain.setup_steps("<home>", files)
    return json.dumps([[s.argv, s.fallback.argv if s.fallback else None] for s in steps])


def _not_generated(toolchain: Toolchain) -> Callable[[str], bool]:
    """Which checkout paths are never "generated": the home, the kept dirs, the toolchain's scratch,
    caches, the root's build/."""
    at_root = {ENV_DIR, *toolchain.kept, *toolchain.scratch, *_NOT_GENERATED_AT_ROOT}

    def skipped(path: str) -> bool:
        parts = path.split("/")
        return (len(parts) == 1 and parts[0] in at_root) or parts[-1] in _NOT_GENERATED

    return skipped


def _keep_generated(
    workdir: Path, checked_out: set[str], skipped: Callable[[str], bool], destination: Path
) -> list[str]:
    """Move the files setup added to the checkout into `destination` (same relative paths); their paths."""
    generated = sorted(set(walk_files(workdir, skipped)) - checked_out)
    for name in generated:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(workdir / name, target)
    return generated


def _override_steps(files: DependencyFiles) -> list[SetupStep]:
    purpose = f"the repository's setup command ({OVERRIDES_FILE})"
    return [SetupStep(["sh", "-c", command], purpose, command) for command in read_overrides(files).setup]


def setup_failure(step: SetupStep, result: ProcessResult) -> str:
    status = "timed out" if result.timed_out else f"exit {result.exit_code}"
    tail = result.output[-_OUTPUT_TAIL:].strip()
    return f"{step.purpose}: `{step.shown}` failed ({status}):\n{tail}"


@contextlib.asynccontextmanager
async def file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive flock on `path`, so replicas sharing the volume do one thing at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class JsonStore:
    """Small JSON documents by key, written atomically (write, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path(key).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.path(key).with_suffix(".partial")
        partial.write_text(json.dumps(data))
        partial.replace(self.path(key))


class EnvironmentCache:
    """Environments by dependency key, built on first use by the networked setup sandbox."""

    def __init__(self, root: Path, setup_sandbox: Sandbox) -> None:
        self.root = root
        self._sandbox = setup_sandbox

    def entry(self, toolchain: Toolchain, key: str) -> Path:
        return self.root / "envs" / f"{toolchain.languages[0].value}-{key[:40]}"

    async def environment(
        self, toolchain: Toolchain, files: DependencyFiles, checkout: Checkout, run: RunCommand
    ) -> Environment:
        """The environment for these dependency files, built now unless cached; raises SetupFailed."""
        # Bound to these files (they may be a patch's, not the base's the runner bound it to).
        toolchain = toolchain.for_project(files)
        key = environment_key(toolchain, files)
        if reason := toolchain.unsupported(files):
            raise SetupFailed(reason)
        try:
            overrides = read_overrides(files)
        except InvalidOverrides as error:
            raise SetupFailed(str(error)) from error
        if not toolchain.needs_setup(files) and not overrides.setup:
            return Environment(key=key)
        entry = self.entry(toolchain, key)
        bound = toolchain.readonly_paths()
        if entry.is_dir():
            return self._described(Environment(key, entry, toolchain.kept, True, bound=bound))
        self._check_visible()
        started = time.monotonic()
        async with file_lock(entry.with_name(entry.name + ".lock")):
            cached = entry.is_dir()  # built by another run while this one waited
            if not cached:
                await self._build(toolchain, files, key, entry, checkout, run)
        built = Environment(key, entry, toolchain.kept, cached, time.monotonic() - started, bound)
        return self._described(built)

    @staticmethod
    def _described(environment: Environment) -> Environment:
        """With the setup commands and notes its manifest recorded."""
        assert environment.entry is not None
        try:
            manifest = json.loads((environment.entry / "manifest.json").read_text())
        except (OSError, ValueError):
            return environment
        setup = tuple(str(line) for line in manifest.get("setup", []))
        notes = tuple(str(line) for line in manifest.get("notes", []))
        generated = tuple(str(name) for name in manifest.get("generated", []))
        return dataclasses.replace(environment, setup=setup, notes=notes, generated=generated)

    def _download_cache(self, toolchain: Toolchain) -> Path | None:
        if not toolchain.download_cache:
            return None
        directory = self.root / "downloads" / toolchain.download_cache
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _check_visible(self) -> None:
        root = self.root.resolve()
        if isinstance(self._sandbox, BwrapSandbox) and any(
            root.is_relative_to(h) for h in _HIDDEN_BY_SANDBOX
        ):
            raise SetupFailed(
                f"the dependency cache {root} is under a directory the sandbox replaces with its own tmpfs; "
                "set WORKSPACE_BASE_PATH (or SF_DATA_DIR) elsewhere"
            )

    async def _build(
        self,
        toolchain: Toolchain,
        files: DependencyFiles,
        key: str,
        entry: Path,
        checkout: Checkout,
        run: RunCommand,
    ) -> None:
        started = time.monotonic()
        async with checkout() as workdir:
            workspace = workspace_path(self._sandbox, workdir)
            home = f"{workspace}/{ENV_DIR}"
            (workdir / ENV_DIR).mkdir(exist_ok=True)
            env = toolchain.environment(home, workspace, online=True)
            sandbox = with_readonly(self._sandbox, toolchain.readonly_paths())
            downloads = self._download_cache(toolchain)
            if downloads is not None:
                env |= toolchain.download_variables(str(downloads))
                sandbox = with_writable(sandbox, [downloads])
            detected = toolchain.setup_steps(home, files) if toolchain.needs_setup(files) else []
            steps = [*detected, *_override_steps(files)]
            skipped = _not_generated(toolchain)
            checked_out = set(await asyncio.to_thread(lambda: list(walk_files(workdir, skipped))))
            notes: list[str] = []
            for step in steps:
                notes += await self._run_step(step, sandbox, workdir, env, run)
            partial = entry.with_name(entry.name + ".partial")
            await asyncio.to_thread(shutil.rmtree, partial, True)
            partial.mkdir(parents=True)
            await asyncio.to_thread(shutil.move, workdir / ENV_DIR, partial / "home")
            for name in toolchain.kept:
                if (workdir / name).exists():
                    await asyncio.to_thread(shutil.move, workdir / name, partial / name)
            generated = await asyncio.to_thread(
                _keep_generated, workdir, checked_out, skipped, partial / GENERATED
            )
        manifest = {
            "key": key,
            "language": toolchain.languages[0].value,
            "toolchain": toolchain.version,
            "files": {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())},
            "setup_seconds": round(time.monotonic() - started, 3),
            "setup": [f"{step.purpose}: {step.shown}" for step in steps],
            "notes": notes,
            "generated": generated,
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
        partial.rename(entry)

    async def _run_step(
        self, step: SetupStep, sandbox: Sandbox, workdir: Path, env: Mapping[str, str], run: RunCommand
    ) -> list[str]:
        """One setup step, or its fallback when it fails; returns the notes a fallback leaves."""
        result = await run(sandbox, step.argv, workdir, env, "setup")
        noted = [step.note] if step.note else []
        if result.exit_code == 0 and not result.timed_out:
            return noted
        failure = setup_failure(step, result)
        if step.fallback is None or result.timed_out:
            raise SetupFailed(failure)
        fallback = step.fallback
        _log.warning("setup.fallback", failed=step.shown, fallback=fallback.shown, note=step.fallback_note)
        retried = await run(sandbox, fallback.argv, workdir, env, "setup")
        if retried.exit_code != 0 or retried.timed_out:
            raise SetupFailed(f"{failure}\n\nthen {setup_failure(fallback, retried)}")
        return [*noted, f"{step.fallback_note}\n{failure[-_NOTE_TAIL:]}"]
