"""`.service-feature.yml`: validated, and applied with its precedence (a request's test command first, then
the file's, then detection's); its python pins the interpreter."""

from __future__ import annotations

import pytest

from service_feature.executor.overrides import (
    OVERRIDES_FILE,
    InvalidOverrides,
    RepositoryOverrides,
    overrides_or_default,
    read_overrides,
)
from service_feature.executor.runner import RunSpec, with_overrides
from service_feature.executor.toolchains import PythonToolchain, toolchain_for
from service_feature.models import Language

VALID = b'setup:\n  - make generated\ntest_command: pytest -x unit\npython: "3.10"\n'


def test_a_valid_file_is_read() -> None:
    overrides = read_overrides({OVERRIDES_FILE: VALID})

    assert overrides == RepositoryOverrides(
        setup=("make generated",), test_command="pytest -x unit", python="3.10"
    )
    assert read_overrides({}) == RepositoryOverrides()
    assert read_overrides({OVERRIDES_FILE: b""}) == RepositoryOverrides()


@pytest.mark.parametrize(
    "content",
    [
        b"test_comand: pytest\n",
        b"python: 3.1O\n",
        b"python: '2.7'\n",
        b"setup: [\n",
        b"setup: make\n",
        b"- a\n",
    ],
)
def test_an_invalid_file_is_refused_with_the_file_named(content: bytes) -> None:
    with pytest.raises(InvalidOverrides, match=OVERRIDES_FILE):
        read_overrides({OVERRIDES_FILE: content})
    assert overrides_or_default({OVERRIDES_FILE: content}) == RepositoryOverrides()


def spec(test_command: str | None) -> RunSpec:
    return RunSpec(
        execution_id="e",
        repository_url="r",
        base_commit="c",
        diff="",
        language=Language.python,
        test_command=test_command,
    )


def test_the_request_command_wins_over_the_file_which_wins_over_detection() -> None:
    files = {OVERRIDES_FILE: VALID}

    assert with_overrides(spec("make test"), files).test_command == "make test"
    assert with_overrides(spec(None), files).test_command == "pytest -x unit"
    assert with_overrides(spec(None), {}).test_command is None


def test_the_file_pins_the_interpreter_over_requires_python() -> None:
    python = toolchain_for(Language.python)
    assert isinstance(python, PythonToolchain)
    files = {
        "pyproject.toml": b'[project]\nname = "p"\nrequires-python = ">=3.12"\n',
        OVERRIDES_FILE: b'python: "3.10"\n',
    }

    configured = python.for_project(files)

    assert configured.interpreter is not None
    assert configured.interpreter.minor == "3.10"
    assert python.for_project({OVERRIDES_FILE: b'python: "3.99"\n'}).unsupported({}) is not None
