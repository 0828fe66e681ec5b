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
import functools
import os
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

    def for_project(self, files: DependencyFiles) -> PythonToolchain:
        requirement = read_python_requirement(files)
        if pinned := overrides_or_default(files).python:
            requirement = PythonRequirement(SpecifierSet(f"=={pinned}.*"), frozenset(), OVERRIDES_FILE)
        try:
            interpreter = choose(available_interpreters(), requirement, platform_interpreter())
        except NoInterpreter as error:
            return self._configured(None, None, str(error))
        return self._configured(interpreter, install_plan(files), "")

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
            _install_step(pip, project.plan),
        ]

    def setup_commands(self, home: str, files: DependencyFiles) -> list[list[str]]:
        return [step.argv for step in self.setup_steps(home, files)]

    def download_variables(self, directory: str) -> dict[str, str]:
        return {"UV_CACHE_DIR": directory}

    def test_command(self, home: str | None) -> list[str]:
        python = f"{home}/venv/bin/python" if home else "python"  # the venv's, first on PATH
        return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={JUNIT_FILE}"]

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
    purpose = f"installing pytest, the project and its test dependencies{sources}"
    return SetupStep([*pip, *plan.install_arguments()], purpose, shown, fallback, note)


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
