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
* **Concurrent setups of one key build it once**: an `flock` per entry (replicas may share the volume), the
  entry built under `<entry>.partial` and renamed into place, so an entry that exists is complete. A failed
  setup is not cached (a registry hiccup must not stick).

Layout under the cache root (`<executor workspace>/cache`): `envs/<language>-<key>/{home,node_modules,
manifest.json}`, `envs/<…>.lock`, and `baselines/<key>.json` (the runner's base-commit results, `JsonStore`).

The bubblewrap sandbox mounts a private tmpfs over `/dev/shm`, so a cache there would be invisible to the
tests: such a cache root is refused with a message rather than failing obscurely (one under `/tmp` works:
the sandbox binds it on top of its private `/tmp`). Docker cannot bind the
entry: with it, dependencies are not available to the tests (run Docker images with them preinstalled).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service_feature.executor.sandbox.base import ProcessResult, Sandbox
from service_feature.executor.sandbox.bwrap import WORKSPACE, BwrapSandbox
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.toolchains import ENV_DIR, DependencyFiles, Toolchain

_HIDDEN_BY_SANDBOX = (Path("/dev/shm"),)  # noqa: S108 - checked against, never used
_OUTPUT_TAIL = 4000

# The runner's way of running one sandboxed command: it registers the run (so it can be cancelled) and
# raises when it was. Arguments: sandbox, argv, workdir, environment, what the run is (for operators).
RunCommand = Callable[[Sandbox, Sequence[str], Path, Mapping[str, str], str], Awaitable[ProcessResult]]
# A fresh checkout to install in (the base commit, or base + patch when dependency changes are allowed).
Checkout = Callable[[], AbstractAsyncContextManager[Path]]


class SetupFailed(Exception):
    """Installing the dependencies failed; the message says which command and ends with its output."""


@dataclass(frozen=True)
class Environment:
    """An installed environment (or none: nothing needed installing) as test runs use it."""

    key: str
    entry: Path | None = None
    kept: tuple[str, ...] = ()
    cached: bool = False
    setup_seconds: float = 0.0

    def describe(self) -> dict[str, object]:
        return {
            "key": self.key[:16],
            "installed": self.entry is not None,
            "cached": self.cached,
            "setup_seconds": round(self.setup_seconds, 3),
        }

    def home(self, workspace: str) -> str | None:
        """The home as a sandboxed command sees it, for the toolchain's variables."""
        return f"{workspace}/{ENV_DIR}" if self.entry else None

    def readonly_paths(self) -> tuple[Path, ...]:
        return (self.entry,) if self.entry else ()

    def link_into(self, workdir: Path) -> None:
        """Point the workspace's home and kept dirs at the cache entry (replacing whatever is there)."""
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
            link.symlink_to(target, target_is_directory=True)


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
    """`sandbox`, also showing `paths` read-only: bwrap binds them; the process sandbox sees the host anyway;
    Docker is returned as it is (see the module docstring)."""
    if not isinstance(sandbox, BwrapSandbox) or not paths:
        return sandbox
    return sandbox.with_readonly(paths)


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
        key = dependency_key(toolchain.languages[0].value, toolchain.version, files)
        if not toolchain.needs_setup(files):
            return Environment(key=key)
        entry = self.entry(toolchain, key)
        if entry.is_dir():
            return Environment(key=key, entry=entry, kept=toolchain.kept, cached=True)
        self._check_visible()
        started = time.monotonic()
        async with file_lock(entry.with_name(entry.name + ".lock")):
            cached = entry.is_dir()  # built by another run while this one waited
            if not cached:
                await self._build(toolchain, files, key, entry, checkout, run)
        return Environment(key, entry, toolchain.kept, cached, time.monotonic() - started)

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
            for argv in toolchain.setup_commands(home, files):
                result = await run(sandbox, argv, workdir, env, "setup")
                if result.exit_code != 0 or result.timed_out:
                    status = "timed out" if result.timed_out else f"exit {result.exit_code}"
                    tail = result.output[-_OUTPUT_TAIL:]
                    raise SetupFailed(f"dependency setup failed: `{' '.join(argv)}` ({status})\n{tail}")
            partial = entry.with_name(entry.name + ".partial")
            await asyncio.to_thread(shutil.rmtree, partial, True)
            partial.mkdir(parents=True)
            await asyncio.to_thread(shutil.move, workdir / ENV_DIR, partial / "home")
            for name in toolchain.kept:
                if (workdir / name).exists():
                    await asyncio.to_thread(shutil.move, workdir / name, partial / name)
        manifest = {
            "key": key,
            "language": toolchain.languages[0].value,
            "toolchain": toolchain.version,
            "files": {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())},
            "setup_seconds": round(time.monotonic() - started, 3),
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
        partial.rename(entry)
