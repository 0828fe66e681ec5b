"""What each language needs to run a repository's tests: dependency files, setup, test command, environment.

One `Toolchain` per language, declarative where it can be, so the cached setup (`setup.py`) and the runner
stay language-agnostic:

* **dependency files**: files whose contents decide the installed environment (patterns name repository
  paths; `*` stays within one directory); their hash (with the language and the toolchain's version) is the
  cache key, and a patch that changes them is flagged.
* **setup**: the commands that install dependencies, run once per cache key in a sandbox with network. They
  write into `<workspace>/.service-feature-env` (the "home"); `kept` names what they leave in the workspace
  itself (`node_modules`). Both are moved into the cache afterwards. A toolchain with a `download_cache`
  gets a directory that persists across setups (downloads), bound read-write into the setup sandbox only.
* **test**: the command, run without network; the home is then a link to the read-only cache entry, so every
  path baked in during setup (venv scripts, editable installs pointing at /workspace) is valid again.
* **readonly_paths**: toolchain installs outside the system dirs the sandbox already shows (a rustup sysroot
  under /root, a node under /opt), bound read-only.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

from service_feature.executor.results import (
    Counts,
    parse_any,
)
from service_feature.models import Language

ENV_DIR = ".service-feature-env"
JUNIT_FILE = ".service-feature-junit.xml"
GO_BUILD_CACHE = ".service-feature-go-build"
_SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
SYSTEM_PATH = _SYSTEM_PATH  # for a toolchain that builds its PATH without the platform's interpreter
BASE_ENV = {
    # The platform's interpreter comes first, so `python -m pytest` in a test_command finds pytest.
    "PATH": ":".join((str(Path(sys.executable).parent), *_SYSTEM_PATH)),
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "CI": "true",
}
_VERSION_TIMEOUT_SECONDS = 30

DependencyFiles = Mapping[str, bytes]  # repository path → contents


@dataclass(frozen=True)
class SetupStep:
    """One setup command: `display` is how a user would write it (for messages), `purpose` what it does.
    When it fails and `fallback` is set, the fallback runs instead, and `fallback_note` (why that is still
    a usable environment) is kept with the environment; `note` is kept either way."""

    argv: list[str]
    purpose: str = "dependency setup"
    display: str = ""
    fallback: SetupStep | None = None
    fallback_note: str = ""
    note: str = ""  # what a user should know about the environment this step makes, kept with it

    @property
    def shown(self) -> str:
        return self.display or " ".join(self.argv)


@dataclass(frozen=True)
class Installation:
    """Where a toolchain's commands are found (`bin_dir`, for PATH) and the install they belong to (`root`,
    bound read-only; the sandbox skips it when it is a system dir it shows anyway)."""

    bin_dir: Path
    root: Path


class Toolchain:
    """The defaults every language shares; subclasses say what differs."""

    languages: tuple[Language, ...] = ()
    binary = ""
    dependency_patterns: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    # What the platform's commands (not the project's setup) write in the workspace: never taken for files
    # the project's setup generated.
    scratch: tuple[str, ...] = (JUNIT_FILE,)
    version_commands: tuple[tuple[str, ...], ...] = ()

    download_cache = ""  # the name of a directory of downloads kept across setups, or "" for none

    def dependency_names(self, names: Iterable[str]) -> list[str]:
        """The dependency files among a repository's file paths, sorted."""
        return sorted(n for n in names if any(path_matches(n, p) for p in self.dependency_patterns))

    def for_project(self, files: DependencyFiles) -> Toolchain:
        """This toolchain as one repository needs it, decided by the base commit's dependency files (its
        package manager, its Go workspace's modules): test_command, variables and path_dirs get no files.
        By default the same for every repository."""
        return self

    def for_repository(self, url: str) -> Toolchain:
        """This toolchain for the repository at `url`, for what only its address says (a Go module path
        for a repository without go.mod). By default the same for every repository."""
        return self

    def unsupported(self, files: DependencyFiles) -> str | None:
        """Why no repository with these dependency files can be tested with the installed toolchain (it asks
        for a newer language version), or None; checked before setup, so the reason is what is reported."""
        return None

    def needs_setup(self, files: DependencyFiles) -> bool:
        """Whether there is anything to install; a repository without it runs its tests directly."""
        return bool(files)

    def key_files(self, files: DependencyFiles) -> DependencyFiles:
        """The files that go into the environment's key: all of them, unless the toolchain knows that
        their contents make no difference (then environments are shared more widely)."""
        return files

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        raise NotImplementedError

    def setup_steps(self, home: str, files: DependencyFiles) -> list[SetupStep]:
        return [SetupStep(argv) for argv in self.setup_commands(home, files)]

    def download_variables(self, directory: str) -> dict[str, str]:
        """The variables that point setup's tools at the `download_cache` directory."""
        return {}

    def no_tests(self, exit_code: int | None) -> bool:
        """Whether this exit code means the suite ran and found no test, which is not an error."""
        return False

    def test_command(self, home: str | None) -> list[str]:
        raise NotImplementedError

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        """Environment variables beyond PATH; `home` is None when the repository needed no setup."""
        return {}

    def path_dirs(self, home: str | None) -> list[str]:
        """Directories to put before the system PATH."""
        installation = self.installation
        if installation is None or str(installation.bin_dir) in _SYSTEM_PATH:
            return []
        return [str(installation.bin_dir)]

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_any(output)

    def untestable(self, baseline: Mapping[str, Any], command: str) -> str | None:
        """Why the base commit's suite could not run at all (so no patch can be judged by it), or None.
        `baseline` is the base run's summary (`Outcome.summary()` plus `output_tail`). By default: it
        timed out, or it failed with no test passed or failed by name (a build or collection error)."""
        if baseline.get("timed_out"):
            return f"baseline: `{command}` timed out on the base commit"
        failed_to_run = baseline.get("exit_code") not in (0, None) and not baseline.get("passed")
        if failed_to_run and not baseline.get("failed"):
            tail = str(baseline.get("output_tail", ""))[-2000:]
            return (
                f"baseline: `{command}` cannot run the base commit's tests "
                f"(exit {baseline.get('exit_code')})\n{tail}"
            )
        return None

    def retry(self, baseline: Mapping[str, Any]) -> Toolchain | None:
        """Another way to set up a repository whose base commit's suite could not run (`untestable`) with
        this one, when its output shows that way may run it; None when there is none. The runner keeps the
        first way that runs the base (see `PythonToolchain.retry`: an older pytest)."""
        return None

    @functools.cached_property
    def installation(self) -> Installation | None:
        """Found once: toolchains are module-level singletons."""
        return self._locate()

    def _locate(self) -> Installation | None:
        found = shutil.which(self.binary, path=":".join(host_path()))
        if found is None:
            return None
        return Installation(bin_dir=Path(found).parent, root=Path(found).resolve().parent.parent)

    def missing(self) -> str | None:
        """Why this toolchain cannot run here, or None."""
        return None if self.installation else f"{self.binary} is not installed on the executor"

    def readonly_paths(self) -> tuple[Path, ...]:
        installation = self.installation
        return (installation.root,) if installation else ()

    @functools.cached_property
    def version(self) -> str:
        """The toolchain's version, part of the cache key: an upgrade rebuilds the environments."""
        return self._version()

    def _version(self) -> str:
        installation = self.installation
        if installation is None:
            return ""
        return " ".join(
            command_output([str(installation.bin_dir / c[0]), *c[1:]]) for c in self.version_commands
        )

    def environment(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        """The whole environment of a sandboxed command (setup when `online`, else the tests)."""
        path = ":".join(dict.fromkeys([*self.path_dirs(home), *BASE_ENV["PATH"].split(":")]))
        return {**BASE_ENV, "PATH": path, **self.variables(home, workspace, online=online)}


def path_matches(name: str, pattern: str) -> bool:
    """`fnmatch` per path component: `requirements/*.txt` matches `requirements/dev.txt` only, and a
    pattern without a slash matches files at the repository root only."""
    parts, wanted = PurePosixPath(name).parts, PurePosixPath(pattern).parts
    return len(parts) == len(wanted) and all(fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True))


def host_path() -> list[str]:
    """Where the executor looks for toolchains: its PATH plus the usual per-user install (rustup's)."""
    return [*os.environ.get("PATH", "").split(":"), str(Path.home() / ".cargo" / "bin"), *_SYSTEM_PATH]


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_VERSION_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()
