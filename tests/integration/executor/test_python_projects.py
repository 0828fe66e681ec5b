"""Python projects the way real ones declare their tests, through TestRunner and the real bubblewrap sandbox:
a virtualenv of the project's own (never the platform's interpreter and plugins), made by uv with test
dependencies from a dependency group, an extra, tox's deps, plugins for `addopts`, an interpreter chosen by
requires-python, and base commits that cannot be tested reported as such.

Real installs from PyPI, kept small; the tests share one cache root (so uv's download cache) and run in one
xdist group: each project's dependency files differ, so each still builds its own environment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service_feature.executor.runner import TestRunner
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.git import Git
from service_feature.models import Language
from tests.integration.executor.test_toolchains import LIMITS, Repository, spec

pytestmark = pytest.mark.xdist_group("python-projects")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("python-projects") / "cache"


@pytest.fixture
def runner(bwrap_sandbox: BwrapSandbox, tmp_path: Path, shared_cache: Path) -> TestRunner:
    git = Git(tmp_path / "executor", allow_local=True)
    return TestRunner(
        git, bwrap_sandbox, LIMITS, 2, setup_sandbox=BwrapSandbox(network=True), cache_root=shared_cache
    )


def repository(tmp_path: Path, files: dict[str, str]) -> Repository:
    return Repository(tmp_path / "origin", files)


CLEAN = {
    "test_clean.py": """
        import importlib.util
        import os
        import sys


        def test_runs_in_a_venv_of_its_own():
            assert sys.prefix != sys.base_prefix
            assert sys.prefix.endswith("/venv")
            assert os.environ["PATH"].split(":")[0] == os.path.join(sys.prefix, "bin")


        def test_the_platform_plugins_are_not_there():
            for name in ("hypothesis", "pytest_asyncio", "xdist", "pytest_timeout", "service_feature"):
                assert importlib.util.find_spec(name) is None, name
    """,
}


async def test_a_repository_with_nothing_to_install_runs_in_a_clean_shared_venv(
    runner: TestRunner, tmp_path: Path
) -> None:
    first = await runner.run(spec(repository(tmp_path / "a", CLEAN), Language.python))
    other = {**CLEAN, "pyproject.toml": "[tool.black]\nline-length = 100\n"}
    second = await runner.run(spec(repository(tmp_path / "b", other), Language.python, name="f2"))

    assert (first.passed, first.failed, first.errored) == (2, 0, 0), first.output_tail
    assert first.environment is not None
    assert second.environment is not None
    assert first.environment["installed"]
    assert second.environment["cached"]  # nothing to install either: the same base environment
    assert second.environment["key"] == first.environment["key"]
    assert second.passed == 2, second.output_tail


DEPENDENCY_GROUP = {
    "pyproject.toml": """
        [dependency-groups]
        test = [{ include-group = "base" }]
        base = ["six"]
    """,
    "tests/test_group.py": """
        import six


        def test_the_group_is_installed():
            assert six.PY3
    """,
}


async def test_a_dependency_group_with_include_group(runner: TestRunner, tmp_path: Path) -> None:
    result = await runner.run(spec(repository(tmp_path, DEPENDENCY_GROUP), Language.python))

    assert (result.passed, result.failed, result.errored) == (1, 0, 0), result.output_tail
    assert result.environment is not None
    assert any("dependency-groups" in line for line in result.environment["setup"])


SRC_LAYOUT_WITH_EXTRA = {
    "pyproject.toml": """
        [project]
        name = "greeter"
        version = "1.2.3"
        requires-python = ">=3.12"
        optional-dependencies = { test = ["six"] }
        scripts = { greet = "greeter.cli:main" }

        [tool.pytest.ini_options]
        testpaths = ["checks"]
    """,
    "src/greeter/__init__.py": "",
    "src/greeter/cli.py": "def main():\n    print('hello from greeter')\n",
    "checks/test_installed.py": """
        import importlib.metadata
        import subprocess
        import sys

        import six


        def test_the_console_script_and_metadata_are_installed():
            done = subprocess.run(["greet"], capture_output=True, text=True, check=True)
            assert done.stdout == "hello from greeter\\n"
            assert importlib.metadata.version("greeter") == "1.2.3"
            assert six.PY3


        def test_requires_python_chose_the_interpreter():
            assert sys.version_info >= (3, 12)
    """,
}


async def test_a_src_layout_with_a_test_extra_console_script_and_requires_python(
    runner: TestRunner, tmp_path: Path
) -> None:
    result = await runner.run(spec(repository(tmp_path, SRC_LAYOUT_WITH_EXTRA), Language.python))

    assert (result.passed, result.failed, result.errored) == (2, 0, 0), result.output_tail
    assert result.environment is not None
    setup = " ".join(result.environment["setup"])
    assert "uv pip install pytest -e '.[test]'" in setup
    assert "optional-dependencies" in setup
    assert "uv venv --python 3.1" in setup


TOX_AND_COVERAGE = {
    "tox.ini": """
        [testenv]
        deps =
            -r{toxinidir}/requirements/test.txt
            py27: mock
        commands = pytest

        [pytest]
        addopts = --cov=calc --cov-report=term-missing
    """,
    "requirements/test.txt": "six\n",
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": """
        import six

        from calc import add


        def test_add():
            assert add(1, 2) == 3
    """,
}


async def test_tox_deps_with_a_nested_requirements_file_and_cov_addopts(
    runner: TestRunner, tmp_path: Path
) -> None:
    result = await runner.run(spec(repository(tmp_path, TOX_AND_COVERAGE), Language.python))

    assert (result.passed, result.failed, result.errored) == (1, 0, 0), result.output_tail
    assert "coverage: platform" in result.output_tail or "TOTAL" in result.output_tail
    assert result.environment is not None
    assert "pytest-cov" in " ".join(result.environment["setup"])


async def test_a_collection_error_on_the_base_is_untestable_no_tests_is_not(
    runner: TestRunner, tmp_path: Path
) -> None:
    broken = repository(tmp_path / "broken", {"test_broken.py": "import not_a_module_anywhere\n"})
    empty = repository(tmp_path / "empty", {"README.md": "no tests yet\n"})

    collection_error = await runner.prepare(spec(broken, Language.python))
    no_tests = await runner.prepare(spec(empty, Language.python, name="f2"))

    assert collection_error.untestable is not None
    assert "pytest exit 2" in collection_error.untestable
    assert "not_a_module_anywhere" in collection_error.untestable
    assert no_tests.untestable is None
    assert no_tests.baseline is not None
    assert no_tests.baseline["exit_code"] == 5
    assert no_tests.baseline["no_tests"]
    assert no_tests.errored == 0


async def test_a_failing_install_is_a_setup_failure_naming_the_command(
    runner: TestRunner, tmp_path: Path
) -> None:
    files = {
        "requirements-test.txt": "service-feature-no-such-package-on-pypi==0.0.1\n",
        "test_x.py": "def test_x():\n    pass\n",
    }

    result = await runner.prepare(spec(repository(tmp_path, files), Language.python))

    assert result.untestable is not None
    assert result.untestable.startswith("environment: installing pytest")
    assert "`uv pip install pytest -r requirements-test.txt` failed (exit 1)" in result.untestable
    assert "service-feature-no-such-package-on-pypi" in result.untestable


FLAT_UNBUILDABLE = {
    "pyproject.toml": '[project]\nname = "flat"\nversion = "0.1"\ndependencies = ["six"]\n',
    "alpha/__init__.py": "VALUE = 1\n",
    "beta/__init__.py": "VALUE = 2\n",
    "test_flat.py": """
        import alpha
        import beta
        import six


        def test_imports_from_the_checkout():
            assert alpha.VALUE + beta.VALUE == 3
    """,
}


async def test_a_flat_project_that_cannot_be_built_is_tested_from_its_checkout(
    runner: TestRunner, tmp_path: Path
) -> None:
    result = await runner.run(spec(repository(tmp_path, FLAT_UNBUILDABLE), Language.python))

    assert (result.passed, result.failed, result.errored) == (1, 0, 0), result.output_tail
    assert result.environment is not None
    assert "could not be built" in result.environment["notes"][0]


OVERRIDDEN = {
    ".service-feature.yml": """
        python: "3.10"
        setup:
          - uv pip install six
        test_command: python -m pytest -q checks
    """,
    "pyproject.toml": '[project]\nname = "pinned"\nversion = "0"\nrequires-python = ">=3.8"\n',
    "pinned.py": "",
    "checks/test_pinned.py": """
        import sys

        import six


        def test_the_file_chose_python_and_ran_its_setup():
            assert sys.version_info[:2] == (3, 10)
            assert six.PY3
    """,
    "test_never_collected.py": "def test_not_run():\n    raise AssertionError('the file names checks/')\n",
}


async def test_the_repository_override_file(runner: TestRunner, tmp_path: Path) -> None:
    result = await runner.run(spec(repository(tmp_path, OVERRIDDEN), Language.python))

    assert (result.passed, result.failed, result.errored) == (1, 0, 0), result.output_tail
    assert result.command == "sh -c 'python -m pytest -q checks'"
    assert result.environment is not None
    assert "uv venv --python 3.10" in " ".join(result.environment["setup"])


GENERATING_BUILD = {
    # The build writes a module beside the code, as setuptools-scm's `version.py` or an in-place C extension
    # would; the suite is a unittest one in `tests/test.py`, which pytest's default patterns do not match.
    "setup.py": """
        from pathlib import Path

        from setuptools import setup

        Path("stamped", "_build_info.py").write_text("BUILT_BY = 'setup'\\n")
        setup(name="stamped", version="1.0", packages=["stamped"])
    """,
    "stamped/__init__.py": "",
    "tests/__init__.py": "",
    "tests/test.py": """
        import unittest

        from stamped._build_info import BUILT_BY


        class BuildInfoTest(unittest.TestCase):
            def test_the_build_wrote_it(self):
                self.assertEqual(BUILT_BY, "setup")
    """,
}


async def test_files_the_build_writes_in_the_checkout_and_a_unittest_suite_in_tests_test_py(
    runner: TestRunner, tmp_path: Path
) -> None:
    origin = repository(tmp_path, GENERATING_BUILD)

    result = await runner.run(spec(origin, Language.python))

    assert (result.passed, result.failed, result.errored) == (1, 0, 0), result.output_tail
    assert "python_files=test*.py" in result.command
    assert result.environment is not None
    assert result.environment["generated_files"] >= 1


SUITE_FOR_AN_OLDER_PYTEST = {
    # A conftest hook with `path`, an argument pytest no longer passes (wrapt's, until 2024).
    "conftest.py": """
        def pytest_pycollect_makemodule(path, parent):
            return None
    """,
    "test_old.py": "def test_still_works():\n    assert True\n",
}


async def test_a_suite_the_newest_pytest_refuses_runs_with_an_older_major(
    runner: TestRunner, tmp_path: Path
) -> None:
    origin = repository(tmp_path, SUITE_FOR_AN_OLDER_PYTEST)

    prepared = await runner.prepare(spec(origin, Language.python))
    result = await runner.run(spec(origin, Language.python, name="f2"))

    assert prepared.untestable is None, prepared.output_tail
    assert (result.passed, result.failed, result.errored) == (1, 0, 0), result.output_tail
    assert result.environment is not None
    assert result.environment["cached"]
    assert "installing pytest<" in " ".join(result.environment["setup"])
