"""What each language needs to run a repository's tests: dependency files, setup, test command, environment.

One `Toolchain` per language, declarative where it can be, so the cached setup (`setup.py`) and the runner
stay language-agnostic:

* **dependency files**: repository-root files whose contents decide the installed environment; their hash
  (with the language and the toolchain's version) is the cache key, and a patch that changes them is flagged.
* **setup**: the commands that install dependencies, run once per cache key in a sandbox with network. They
  write into `<workspace>/.service-feature-env` (the "home"); `kept` names what they leave in the workspace
  itself (`node_modules`). Both are moved into the cache afterwards.
* **test**: the command, run without network; the home is then a link to the read-only cache entry, so every
  path baked in during setup (venv scripts, editable installs pointing at /workspace) is valid again.
* **readonly_paths**: toolchain installs outside the system dirs the sandbox already shows (a rustup sysroot
  under /root, a node under /opt), bound read-only.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from service_feature.executor.results import (
    Counts,
    parse_any,
    parse_cargo,
    parse_go_json,
    parse_javascript,
    parse_junit,
    parse_pytest_text,
)
from service_feature.models import Language

ENV_DIR = ".service-feature-env"
JUNIT_FILE = ".service-feature-junit.xml"
GO_BUILD_CACHE = ".service-feature-go-build"
_SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
BASE_ENV = {
    # The platform's interpreter comes first, so `python -m pytest` in a test_command finds pytest.
    "PATH": ":".join((str(Path(sys.executable).parent), *_SYSTEM_PATH)),
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "CI": "true",
}
_VERSION_TIMEOUT_SECONDS = 30

DependencyFiles = Mapping[str, bytes]  # repository-root file name → contents


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
    version_commands: tuple[tuple[str, ...], ...] = ()

    def dependency_names(self, names: Iterable[str]) -> list[str]:
        """The dependency files among a repository root's file names, sorted."""
        return sorted(n for n in names if any(fnmatchcase(n, p) for p in self.dependency_patterns))

    def needs_setup(self, files: DependencyFiles) -> bool:
        """Whether there is anything to install; a repository without it runs its tests directly."""
        return bool(files)

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        raise NotImplementedError

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

    @functools.cached_property
    def installation(self) -> Installation | None:
        """Found once: toolchains are module-level singletons."""
        return self._locate()

    def _locate(self) -> Installation | None:
        found = shutil.which(self.binary, path=":".join(_host_path()))
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
        return " ".join(_output([str(installation.bin_dir / c[0]), *c[1:]]) for c in self.version_commands)

    def environment(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        """The whole environment of a sandboxed command (setup when `online`, else the tests)."""
        path = ":".join(dict.fromkeys([*self.path_dirs(home), *BASE_ENV["PATH"].split(":")]))
        return {**BASE_ENV, "PATH": path, **self.variables(home, workspace, online=online)}


class PythonToolchain(Toolchain):
    """pytest in a virtualenv per dependency set, made with the platform's own interpreter (so the sandbox
    already shows it), with pytest, the requirements files and the project itself (editable, so the tests
    import the worktree's code, not a copy of the base's). A repository with nothing to install runs with
    the platform's interpreter, which has pytest: a venv would cost a networked pip run for nothing."""

    languages = (Language.python,)
    binary = "python"
    dependency_patterns = ("requirements*.txt", "pyproject.toml", "setup.py", "setup.cfg")

    def needs_setup(self, files: DependencyFiles) -> bool:
        return bool(_requirements(files)) or (_installable(files) and _declares_dependencies(files))

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        install = ["pytest", *(arg for name in _requirements(files) for arg in ("-r", name))]
        if _installable(files):
            install += ["-e", "."]
        pip = [f"{home}/venv/bin/python", "-m", "pip", "install", "--disable-pip-version-check"]
        return [[sys.executable, "-m", "venv", f"{home}/venv"], [*pip, "--progress-bar", "off", *install]]

    def test_command(self, home: str | None) -> list[str]:
        python = f"{home}/venv/bin/python" if home else sys.executable
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={JUNIT_FILE}"]

    def path_dirs(self, home: str | None) -> list[str]:
        return [f"{home}/venv/bin"] if home else []

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        return {"VIRTUAL_ENV": f"{home}/venv", "PIP_NO_INPUT": "1"} if home else {}

    def parse(self, output: str, workdir: Path) -> Counts | None:
        junit = workdir / JUNIT_FILE
        if junit.is_file():
            counts = parse_junit(junit.read_bytes())
            if counts is not None:
                return counts
        return parse_pytest_text(output) or parse_any(output)

    def _locate(self) -> Installation | None:
        return Installation(bin_dir=Path(sys.executable).parent, root=Path(sys.prefix))

    def readonly_paths(self) -> tuple[Path, ...]:
        return ()  # the sandbox binds the interpreter prefixes itself

    def _version(self) -> str:
        return f"{platform.python_implementation()} {platform.python_version()} ({sys.base_prefix})"


class NodeToolchain(Toolchain):
    """`npm ci` (or `npm install` without a lock file) in setup; `node_modules` is kept in the cache and the
    test workspace gets a link to it, which node follows (it resolves symlinks), so a package's own
    dependencies resolve inside the read-only cache entry."""

    languages = (Language.javascript, Language.typescript)
    binary = "node"
    dependency_patterns = ("package.json", "package-lock.json", "npm-shrinkwrap.json")
    kept = ("node_modules",)
    version_commands = (("node", "--version"), ("npm", "--version"))

    def needs_setup(self, files: DependencyFiles) -> bool:
        if "package-lock.json" in files or "npm-shrinkwrap.json" in files:
            return True
        return _json_has_any(files.get("package.json", b""), ("dependencies", "devDependencies"))

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        locked = "package-lock.json" in files or "npm-shrinkwrap.json" in files
        return [["npm", "ci" if locked else "install", "--no-audit", "--no-fund"]]

    def test_command(self, home: str | None) -> list[str]:
        return ["npm", "test"]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        offline = {} if online else {"npm_config_offline": "true"}
        return {"npm_config_update_notifier": "false", "npm_config_fund": "false", **offline}

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_javascript(output) or parse_any(output)


class GoToolchain(Toolchain):
    """`go mod download` into GOMODCACHE in setup; `go test -json ./...` offline (GOPROXY=off) against it.
    The build cache is per run, in the workspace (Go writes to it during tests; `./...` skips dot dirs)."""

    languages = (Language.go,)
    binary = "go"
    dependency_patterns = ("go.mod", "go.sum", "go.work", "go.work.sum")
    version_commands = (("go", "version"),)

    def needs_setup(self, files: DependencyFiles) -> bool:
        return "go.mod" in files or "go.work" in files

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        return [["go", "mod", "download"]]

    def test_command(self, home: str | None) -> list[str]:
        return ["go", "test", "-json", "./..."]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        variables = {
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-mod=mod",
            "GOCACHE": f"{workspace}/{GO_BUILD_CACHE}",
        }
        if home:
            variables["GOMODCACHE"] = f"{home}/gomod"
        if not online:
            variables |= {"GOPROXY": "off", "GOSUMDB": "off"}  # go.sum was checked when downloading
        return variables

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_go_json(output) or parse_any(output)


class RustToolchain(Toolchain):
    """`cargo fetch` into CARGO_HOME in setup; `cargo test --offline` against it. rustup's `cargo` is a proxy
    that needs ~/.rustup, so the active toolchain's sysroot (`rustc --print sysroot`) is what gets bound and
    put on PATH: its real cargo and rustc need nothing else from /root."""

    languages = (Language.rust,)
    binary = "cargo"
    dependency_patterns = ("Cargo.toml", "Cargo.lock")
    version_commands = (("rustc", "--version"), ("cargo", "--version"))

    def needs_setup(self, files: DependencyFiles) -> bool:
        return "Cargo.toml" in files

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        return [["cargo", "fetch"]]

    def test_command(self, home: str | None) -> list[str]:
        return ["cargo", "test", "--offline"]

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        variables = {"CARGO_TERM_COLOR": "never"} | ({"CARGO_HOME": f"{home}/cargo"} if home else {})
        return variables if online else variables | {"CARGO_NET_OFFLINE": "true"}

    def parse(self, output: str, workdir: Path) -> Counts | None:
        return parse_cargo(output) or parse_any(output)

    def _locate(self) -> Installation | None:
        rustc = shutil.which("rustc", path=":".join(_host_path()))
        if rustc is None or shutil.which("cargo", path=":".join(_host_path())) is None:
            return None
        sysroot = Path(_output([rustc, "--print", "sysroot"]))
        return Installation(bin_dir=sysroot / "bin", root=sysroot) if sysroot.is_dir() else None


_TOOLCHAINS: dict[Language, Toolchain] = {
    language: toolchain
    for toolchain in (PythonToolchain(), NodeToolchain(), GoToolchain(), RustToolchain())
    for language in toolchain.languages
}


def toolchain_for(language: Language) -> Toolchain:
    return _TOOLCHAINS[language]


def _host_path() -> list[str]:
    """Where the executor looks for toolchains: its PATH plus the usual per-user install (rustup's)."""
    return [*os.environ.get("PATH", "").split(":"), str(Path.home() / ".cargo" / "bin"), *_SYSTEM_PATH]


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_VERSION_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def _requirements(files: DependencyFiles) -> list[str]:
    return [name for name in sorted(files) if fnmatchcase(name, "requirements*.txt")]


def _installable(files: DependencyFiles) -> bool:
    """A project pip can install: setup.py, or a pyproject.toml with a [project] table."""
    return "setup.py" in files or "project" in _toml(files.get("pyproject.toml", b""))


def _declares_dependencies(files: DependencyFiles) -> bool:
    """setup.py may declare anything; a pyproject.toml says so in [project] (dependencies or optional)."""
    if "setup.py" in files:
        return True
    project = _toml(files.get("pyproject.toml", b"")).get("project", {})
    return bool(project.get("dependencies") or project.get("optional-dependencies"))


def _toml(content: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(content.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _json_has_any(content: bytes, keys: tuple[str, ...]) -> bool:
    try:
        data = json.loads(content or b"{}")
    except ValueError:
        return True  # npm will say what is wrong with it
    return isinstance(data, dict) and any(data.get(key) for key in keys)
