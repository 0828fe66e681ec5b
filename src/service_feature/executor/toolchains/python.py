"""Python: pytest in a virtualenv of the project's own, made by uv with an interpreter the project accepts.

Never the platform's environment: its pytest plugins (hypothesis, asyncio, xdist, timeout…) slow every run
and change how a foreign suite behaves. Every repository gets a virtualenv per dependency set, cached like
every environment: pytest, the plugins its pytest settings need, its test dependencies wherever it declares
them, and the project itself, editable (so entry points and `importlib.metadata` work and the tests import
the worktree's code). A repository with nothing to install shares a base environment (only pytest) with
every other such repository on the same interpreter. `python_project.py` reads the declarations,
`interpreters.py` finds and chooses the interpreter; `for_project` binds both to one repository.

uv makes and fills the environments: fast, and its download cache (kept across setups under the cache root)
means the second project with the same dependencies downloads nothing. It ignores pip's variables
(PIP_INDEX_URL, PIP_FIND_LINKS); its own are passed through to setup.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from uv import find_uv_bin

from service_feature.executor.interpreters import (
    Interpreter,
    NoInterpreter,
    PythonRequirement,
    choose,
    discover,
    platform_interpreter,
)
from service_feature.executor.overrides import OVERRIDES_FILE, overrides_or_default
from service_feature.executor.python_project import DEPENDENCY_PATTERNS, InstallPlan, install_plan
from service_feature.executor.python_project import python_requirement as read_python_requirement
from service_feature.executor.results import Counts, parse_any, parse_junit, parse_pytest_text
from service_feature.executor.toolchains.base import (
    JUNIT_FILE,
    SYSTEM_PATH,
    DependencyFiles,
    Installation,
    SetupStep,
    Toolchain,
    command_output,
    host_path,
)
from service_feature.models import Language

NO_TESTS_COLLECTED = 5
# pytest majors tried, newest first, for a suite the newest pytest cannot run (see `retry`): the two before
# the current one (9), the ones projects that did not pin it were last tested with.
OLDER_PYTEST = ("<9", "<8")
_MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")
# pytest's default `test_*.py *_test.py`, widened for a suite it finds nothing in (see `retry`).
WIDER_PYTHON_FILES = "test*.py *_test.py *_tests.py"
# pytest saying a suite uses what it has removed: an enforced deprecation, a conftest hook with an argument
# the hook no longer has (`pytest_pycollect_makemodule(path, parent)`).
_PYTEST_TOO_NEW = re.compile(r"PytestRemovedIn\d+Warning|PluginValidationError: .* for hook 'pytest_\w+'")
# pytest's exit codes for a run that never got to the tests: interrupted (a collection error), internal
# error, usage error (an option no installed plugin provides).
_CANNOT_RUN = {2: "interrupted, e.g. by a collection error", 3: "internal error", 4: "usage error"}
_UNTESTABLE_TAIL = 2000
# Setup-only variables: uv's (it ignores pip's) and the proxy settings, passed through when the operator set
# them, so a private index or a proxy works in the setup sandbox too.
_PASSED_THROUGH = (
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NATIVE_TLS",
    "SSL_CERT_FILE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
_SETUP_VARIABLES = {
    "UV_PYTHON_DOWNLOADS": "never",  # the interpreter is chosen from the host's; nothing is fetched
    "UV_NO_PROGRESS": "1",
    # Copies, not links into the download cache: the cache is not visible to the tests, and may be pruned.
    "UV_LINK_MODE": "copy",
    # The environment is read-only for the tests, which could not write bytecode: compiling it once here
    # saves compiling pytest and the dependencies on every run.
    "UV_COMPILE_BYTECODE": "1",
}


class PythonToolchain(Toolchain):
    """See the module docstring. The instance in the registry knows no project; `for_project` returns one
    that does (its interpreter and install plan), which the runner uses for everything else."""

    languages = (Language.python,)
    binary = "python"
    dependency_patterns = DEPENDENCY_PATTERNS
    download_cache = "uv"

    def __init__(
        self, interpreter: Interpreter | None = None, plan: InstallPlan | None = None, reason: str = ""
    ) -> None:
        self.interpreter = interpreter
        self.plan = plan
        self.reason = reason  # why no interpreter fits the project, when none does
        self.pytest_below = ""  # "" for the newest pytest, else one of OLDER_PYTEST (see `retry`)
        self.wider_collection = False  # collect `test*.py` too (see `retry`)
        self.all_extras = False  # install every extra of the project's (see `retry`)

    def for_project(self, files: DependencyFiles) -> PythonToolchain:
        requirement = read_python_requirement(files)
        if pinned := overrides_or_default(files).python:
            requirement = PythonRequirement(SpecifierSet(f"=={pinned}.*"), frozenset(), OVERRIDES_FILE)
        try:
            interpreter = choose(available_interpreters(), requirement, platform_interpreter())
        except NoInterpreter as error:
            return self._configured(None, None, str(error))
        return self._configured(interpreter, install_plan(files, all_extras=self.all_extras), "")

    def _configured(
        self, interpreter: Interpreter | None, plan: InstallPlan | None, reason: str
    ) -> PythonToolchain:
        configured = copy.copy(self)
        configured.interpreter, configured.plan, configured.reason = interpreter, plan, reason
        return configured

    def _project(self, files: DependencyFiles) -> PythonToolchain:
        """This toolchain bound to the project, binding it now if the caller did not."""
        return self if self.interpreter is not None or self.reason else self.for_project(files)

    def unsupported(self, files: DependencyFiles) -> str | None:
        return self._project(files).reason or None

    @property
    def version(self) -> str:  # not cached: it depends on the interpreter
        """uv's version and the interpreter: either changing makes new environments."""
        interpreter = self.interpreter.describe() if self.interpreter else "no interpreter chosen"
        return f"{uv_version()}; {interpreter}"

    def missing(self) -> str | None:
        if uv_binary() is None:
            return "uv is not installed on the executor (the `uv` package provides it)"
        return None if available_interpreters() else "no Python interpreter was found on the executor"

    def needs_setup(self, files: DependencyFiles) -> bool:
        return True  # a virtualenv of the project's own, always

    def key_files(self, files: DependencyFiles) -> DependencyFiles:
        plan = self._project(files).plan
        return {} if plan is not None and plan.empty else files

    def setup_steps(self, home: str, files: DependencyFiles) -> list[SetupStep]:
        project = self._project(files)
        if project.interpreter is None or project.plan is None:
            return []  # unsupported() said why
        uv, venv, interpreter = uv_binary() or "uv", f"{home}/venv", project.interpreter
        make = [uv, "venv", "--no-project", "--python", str(interpreter.executable), venv]
        pip = [uv, "pip", "install", "--python", f"{venv}/bin/python"]
        return [
            SetupStep(make, "making the virtualenv", f"uv venv --python {interpreter.release}"),
            _install_step(pip, _with_pytest_below(project.plan, project.pytest_below)),
        ]

    def retry(self, baseline: Mapping[str, Any]) -> PythonToolchain | None:
        """Two ways to run a base commit's suite that the default way could not:

        * **No test collected** (exit 5): collect `test*.py` files too (`tests/test.py`, `tests.py`, a
          unittest suite that setup.py's `test_suite` or `python -m unittest` would run), once.
        * **Every extra**, once, when the suite could not run because a module one of the project's extras
          provides is missing (`No module named 'ujson'` with an extra `ujson`, or one requiring it): the
          suite tests what the extras add, as the project's own test setup installs them all.
        * **An older pytest**, when the suite could not run and pytest itself said why: a deprecation it
          now enforces (`PytestRemovedIn10Warning`…) or a hook argument it no longer passes
          (`PluginValidationError` for a `pytest_…` hook in a conftest). Such a suite was written for an
          older pytest and the project did not pin one; one major at a time, newest first, as far as
          OLDER_PYTEST goes. A project that pins pytest gets its pin from uv's resolution, and an older
          major that conflicts with the pin fails setup, which ends the retries."""
        if baseline.get("exit_code") == NO_TESTS_COLLECTED and not self.wider_collection:
            wider = copy.copy(self)
            wider.wider_collection = True
            return wider
        tail = str(baseline.get("output_tail", ""))
        if self.untestable(baseline, "") is None:
            return None
        if not self.all_extras and self._misses_an_extra(tail):
            extras = copy.copy(self)
            extras.all_extras = True
            return extras
        if not _PYTEST_TOO_NEW.search(tail):
            return None
        tried = OLDER_PYTEST.index(self.pytest_below) + 1 if self.pytest_below else 0
        if tried >= len(OLDER_PYTEST):
            return None
        older = copy.copy(self)
        older.pytest_below = OLDER_PYTEST[tried]
        return older

    def _misses_an_extra(self, output: str) -> bool:
        provided = self.plan.extra_modules if self.plan else frozenset()
        missing = {name.split(".")[0].lower() for name in _MISSING_MODULE.findall(output)}
        return bool(missing & provided)

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        return [step.argv for step in self.setup_steps(home, files)]

    def download_variables(self, directory: str) -> dict[str, str]:
        return {"UV_CACHE_DIR": directory}

    def test_command(self, home: str | None) -> list[str]:
        python = f"{home}/venv/bin/python" if home else "python"  # the venv's, first on PATH
        wider = ["-o", f"python_files={WIDER_PYTHON_FILES}"] if self.wider_collection else []
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *wider, f"--junitxml={JUNIT_FILE}"]

    def path_dirs(self, home: str | None) -> list[str]:
        return [f"{home}/venv/bin"] if home else []  # the project's console scripts, its python first

    def environment(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        """The platform's interpreter is left off PATH: `python`, `pytest` are the project's. Setup also
        gets uv's directory (after the venv's), for a repository's own setup commands (`uv pip install`
        installs into the venv: VIRTUAL_ENV is set)."""
        variables = super().environment(home, workspace, online=online)
        uv = uv_binary()
        tools = [str(Path(uv).parent)] if online and uv else []
        return {**variables, "PATH": ":".join(dict.fromkeys([*self.path_dirs(home), *tools, *SYSTEM_PATH]))}

    def variables(self, home: str | None, workspace: str, *, online: bool) -> dict[str, str]:
        variables = {"VIRTUAL_ENV": f"{home}/venv"} if home else {}
        if online:
            passed = {name: os.environ[name] for name in _PASSED_THROUGH if os.environ.get(name)}
            variables |= _SETUP_VARIABLES | passed
        return variables

    def no_tests(self, exit_code: int | None) -> bool:
        return exit_code == NO_TESTS_COLLECTED

    def untestable(self, baseline: Mapping[str, Any], command: str) -> str | None:
        """pytest's own verdict first: exits 2 to 4 mean the suite could not run (a collection error, an
        option no plugin provides); exit 5 (no tests) is testable, the patch may add the first tests."""
        exit_code = baseline.get("exit_code")
        if baseline.get("timed_out") or exit_code == NO_TESTS_COLLECTED:
            return super().untestable(baseline, command) if baseline.get("timed_out") else None
        if isinstance(exit_code, int) and exit_code in _CANNOT_RUN:
            tail = str(baseline.get("output_tail", ""))[-_UNTESTABLE_TAIL:]
            return (
                f"baseline: `{command}` cannot run the base commit's tests "
                f"(pytest exit {exit_code}: {_CANNOT_RUN[exit_code]})\n{tail}"
            )
        return super().untestable(baseline, command)

    def parse(self, output: str, workdir: Path) -> Counts | None:
        junit = workdir / JUNIT_FILE
        if junit.is_file():
            counts = parse_junit(junit.read_bytes())
            if counts is not None:
                return counts
        return parse_pytest_text(output) or parse_any(output)

    def _locate(self) -> Installation | None:
        uv = uv_binary()
        return Installation(bin_dir=Path(uv).parent, root=Path(uv).parent) if uv else None

    def readonly_paths(self) -> tuple[Path, ...]:
        """The chosen interpreter's install and uv's directory (the platform's prefixes the sandbox binds
        itself)."""
        uv = uv_binary()
        interpreter = self.interpreter.bound_paths() if self.interpreter else ()
        return (*interpreter, *((Path(uv).resolve().parent,) if uv else ()))


def _with_pytest_below(plan: InstallPlan, below: str) -> InstallPlan:
    """The plan with its `pytest` requirement capped below a major (`pytest<9`), when `below` says one."""
    if not below:
        return plan

    def capped(arguments: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"pytest{below}" if argument == "pytest" else argument for argument in arguments)

    fallback = capped(plan.fallback) if plan.fallback is not None else None
    return dataclasses.replace(plan, arguments=capped(plan.arguments), fallback=fallback)


def _install_step(pip: list[str], plan: InstallPlan) -> SetupStep:
    sources = f" (test dependencies from {', '.join(plan.sources)})" if plan.sources else ""
    shown = f"uv pip install {shlex.join(plan.install_arguments())}"
    fallback = None
    if plan.fallback is not None:
        fallback = SetupStep(
            [*pip, *plan.fallback],
            "installing the test dependencies without the project",
            f"uv pip install {shlex.join(plan.fallback)}",
        )
    note = (
        f"the project could not be built (`{shown}` failed), so it is not installed: its tests import the "
        "pure-Python code from the checkout, with the dependencies it declares statically installed"
    )
    pytest = next((argument for argument in plan.arguments if argument.startswith("pytest<")), "pytest")
    if pytest != "pytest":  # say why: the user sees this in the setup log
        pytest += " (the base commit's suite cannot run with a newer one)"
    purpose = f"installing {pytest}, the project and its test dependencies{sources}"
    return SetupStep([*pip, *plan.install_arguments()], purpose, shown, fallback, note, "\n".join(plan.notes))


def available_interpreters() -> tuple[Interpreter, ...]:
    return discover(tuple(host_path()))


@functools.cache
def uv_binary() -> str | None:
    """The uv that the `uv` package installed (beside the platform's interpreter), else one on PATH."""
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return shutil.which("uv", path=":".join(host_path()))


@functools.cache
def uv_version() -> str:
    uv = uv_binary()
    return command_output([uv, "--version"]) if uv else "uv missing"
