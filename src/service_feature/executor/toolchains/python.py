"""Python: pytest in a virtualenv per dependency set."""

from __future__ import annotations

import platform
import sys
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from service_feature.executor.results import Counts, parse_any, parse_junit, parse_pytest_text
from service_feature.executor.toolchains.base import JUNIT_FILE, DependencyFiles, Installation, Toolchain
from service_feature.models import Language


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
