"""Which interpreter a project's environment is made with: the project's requires-python and classifiers
against what is installed, the platform's version preferred. Discovery on this host is checked loosely."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from service_feature.executor.interpreters import (
    Interpreter,
    NoInterpreter,
    PythonRequirement,
    choose,
    discover,
)
from service_feature.executor.toolchains.base import host_path


def interpreter(release: str, prefix: str = "") -> Interpreter:
    major, minor, micro = (int(part) for part in release.split("."))
    root = Path(prefix or f"/opt/python/{release}")
    return Interpreter(root / "bin" / f"python{major}.{minor}", root, (major, minor, micro))


INSTALLED = [interpreter(r) for r in ("3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0")]
PLATFORM = INSTALLED[3]


def chosen(specifier: str | None = None, classifiers: set[str] | None = None) -> str:
    requirement = PythonRequirement(
        SpecifierSet(specifier) if specifier is not None else None, frozenset(classifiers or ()), "test"
    )
    return choose(INSTALLED, requirement, PLATFORM).release


@pytest.mark.parametrize(
    ("specifier", "classifiers", "release"),
    [
        (None, None, "3.11.7"),  # anything goes: the platform's version
        (">=3.8", None, "3.11.7"),
        (">=3.12", None, "3.13.0"),  # the platform's does not fit: the newest that does
        (">=3.8,<3.11", None, "3.10.13"),
        ("~=3.9.0", None, "3.9.18"),
        (None, {"3.7", "3.8", "3.9"}, "3.9.18"),  # an old project's classifiers narrow the choice
        (">=3.8", {"3.10", "3.11", "3.12"}, "3.11.7"),
        (">=3.12", {"3.8"}, "3.13.0"),  # classifiers that contradict requires-python are ignored
    ],
)
def test_choice(specifier: str | None, classifiers: set[str] | None, release: str) -> None:
    assert chosen(specifier, classifiers) == release


def test_none_fits_names_what_is_needed_and_what_is_installed() -> None:
    with pytest.raises(NoInterpreter) as raised:
        chosen(">=3.14")

    assert "requires-python >=3.14 (test)" in str(raised.value)
    assert "installed: 3.8.18, 3.9.18, 3.10.13, 3.11.7, 3.12.1, 3.13.0" in str(raised.value)


def test_the_platform_interpreter_is_found_on_this_host() -> None:
    found = discover(tuple(host_path()))

    assert any(i.version[:2] == sys.version_info[:2] for i in found)
    assert all(i.version[:2] >= (3, 8) for i in found)
    assert all(i.executable.is_file() and "shims" not in i.executable.parts for i in found)
