"""The Python interpreters installed on the executor's host, and the one a project's tests should run with.

A project says which Pythons it supports in `requires-python` (and, less reliably, in its classifiers); the
executor has a handful installed (its own, the system's, pyenv's). The choice prefers the platform's own
version when the project accepts it (its environments are the most likely to be cached already), else the
newest the project accepts; classifiers narrow the choice when they name versions that also fit, because an
old project that lists 3.6 to 3.9 usually breaks on a much newer Python even without an upper bound.

Discovery runs each candidate once (a few milliseconds each) and is cached for the process: the host's
interpreters do not change under a running executor.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet

# uv (which makes the environments) and current pytest do not support older Pythons.
OLDEST_SUPPORTED = (3, 8)
_NAMES = ("python3", "python", *(f"python3.{minor}" for minor in range(8, 20)))
_PROBE = (
    "import json, os, sys, platform; print(json.dumps({"
    "'executable': os.path.realpath(getattr(sys, '_base_executable', sys.executable)),"
    "'prefix': os.path.realpath(sys.base_prefix),"
    "'version': list(sys.version_info[:3]),"
    "'implementation': platform.python_implementation()}))"
)
_PROBE_TIMEOUT_SECONDS = 10


class NoInterpreter(Exception):
    """No installed interpreter satisfies the project; the message names what it needs and what is here."""


@dataclass(frozen=True)
class Interpreter:
    executable: Path
    prefix: Path
    version: tuple[int, int, int]
    implementation: str = "CPython"

    @property
    def minor(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def release(self) -> str:
        return ".".join(map(str, self.version))

    def describe(self) -> str:
        return f"{self.implementation} {self.release} ({self.executable})"

    def bound_paths(self) -> tuple[Path, ...]:
        """What a sandbox must show for this interpreter to start: its prefix, and its binary's directory
        when that lies elsewhere (a /usr/local/bin link to an install under /opt)."""
        if self.executable.is_relative_to(self.prefix):
            return (self.prefix,)
        return (self.prefix, self.executable.parent)


@dataclass(frozen=True)
class PythonRequirement:
    """What a project accepts: `requires-python` (None: anything) and the versions its classifiers list."""

    specifier: SpecifierSet | None = None
    classifiers: frozenset[str] = frozenset()
    source: str = ""

    def describe(self) -> str:
        parts = []
        if self.specifier is not None:
            parts.append(f"requires-python {self.specifier} ({self.source})")
        if self.classifiers:
            parts.append("classifiers " + ", ".join(sorted(self.classifiers, key=_minor_key)))
        return "; ".join(parts) or "any Python"


def choose(
    available: Sequence[Interpreter], requirement: PythonRequirement, preferred: Interpreter | None
) -> Interpreter:
    """The interpreter to build the project's environment with; raises NoInterpreter when none fits."""
    fitting = [i for i in available if _accepts(requirement.specifier, i)]
    if not fitting:
        installed = ", ".join(installed_versions(available)) or "none"
        raise NoInterpreter(
            f"no installed Python satisfies the project's {requirement.describe()}; installed: {installed}"
        )
    classified = [i for i in fitting if i.minor in requirement.classifiers]
    pool = classified or fitting
    if preferred is not None and any(i.minor == preferred.minor for i in pool):
        return preferred
    return max(pool, key=lambda i: i.version)


@functools.cache
def discover(search_path: tuple[str, ...]) -> tuple[Interpreter, ...]:
    """Every usable interpreter in `search_path` (directories), pyenv and the platform's, newest first."""
    with ThreadPoolExecutor(max_workers=8) as pool:  # each probe is a whole interpreter start-up
        probes = list(pool.map(_probe, _candidates(search_path)))
    found = {probe.executable: probe for probe in probes if probe is not None}
    usable = (i for i in found.values() if i.version[:2] >= OLDEST_SUPPORTED)
    return tuple(sorted(usable, key=lambda i: i.version, reverse=True))


@functools.cache
def platform_interpreter() -> Interpreter | None:
    """The interpreter the platform itself runs on (the base of its virtualenv)."""
    return _probe(Path(sys.executable))


def _accepts(specifier: SpecifierSet | None, interpreter: Interpreter) -> bool:
    return specifier is None or specifier.contains(interpreter.release, prereleases=True)


def _candidates(search_path: Sequence[str]) -> Iterator[Path]:
    """Interpreter binaries on the executor's PATH and in pyenv, with version managers' shims left out
    (pyenv's versions are listed directly, and a shim needs the manager's state to start)."""
    seen: set[Path] = set()
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    listed = [Path(d, name) for d in search_path if d and "shims" not in Path(d).parts for name in _NAMES]
    listed += [*sorted(pyenv.glob("*/bin/python3")), Path(sys.executable)]
    for path in listed:
        real = path.resolve()
        if real not in seen and real.is_file() and os.access(real, os.X_OK):
            seen.add(real)
            yield path


def _probe(path: Path) -> Interpreter | None:
    try:
        done = subprocess.run(
            [str(path), "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_SECONDS,
            check=False,
        )
        facts = json.loads(done.stdout)
        major, minor, micro = (int(part) for part in facts["version"])
        return Interpreter(
            Path(facts["executable"]), Path(facts["prefix"]), (major, minor, micro), facts["implementation"]
        )
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None  # Python 2, a broken install, not a Python at all


def installed_versions(interpreters: Iterable[Interpreter]) -> list[str]:
    return sorted({i.release for i in interpreters}, key=_release_key)


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split(".") if part.isdigit())


def _minor_key(minor: str) -> tuple[int, ...]:
    return _release_key(minor)
