"""What each toolchain counts as dependency files, whether it needs setup, and the commands and environment
it gives the two steps; the cache key and change detection of setup.py. No toolchain is run here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from service_feature.executor.sandbox.bwrap import WORKSPACE, BwrapSandbox
from service_feature.executor.sandbox.cgroups import CgroupSupport
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.sandbox.userns import Identity
from service_feature.executor.setup import (
    Environment,
    changed_files,
    dependency_key,
    environment_key,
    with_readonly,
    workspace_path,
)
from service_feature.executor.toolchains import ENV_DIR, JUNIT_FILE, PythonToolchain, toolchain_for
from service_feature.executor.toolchains.python import OLDER_PYTEST, WIDER_PYTHON_FILES
from service_feature.models import Language

HOME = f"{WORKSPACE}/{ENV_DIR}"


@pytest.mark.parametrize(
    ("language", "names", "expected"),
    [
        (Language.python, ["requirements-dev.txt", "pyproject.toml", "README.md", "setup.py"], 3),
        (Language.python, ["requirements/test.txt", "docs/requirements.txt", "tox.ini", "src/setup.py"], 2),
        (Language.javascript, ["package.json", "package-lock.json", "index.js"], 2),
        (Language.typescript, ["package.json", "tsconfig.json"], 1),
        (Language.go, ["go.mod", "go.sum", "main.go"], 2),
        (Language.rust, ["Cargo.toml", "Cargo.lock", "src"], 2),
    ],
)
def test_dependency_files_are_picked_from_the_root_listing(
    language: Language, names: list[str], expected: int
) -> None:
    assert len(toolchain_for(language).dependency_names(names)) == expected


def python_for(files: dict[str, bytes]) -> PythonToolchain:
    python = toolchain_for(Language.python)
    assert isinstance(python, PythonToolchain)
    return python.for_project(files)


def test_python_without_anything_to_install_gets_a_shared_venv_with_pytest_alone() -> None:
    bare = python_for({"pyproject.toml": b"[tool.pytest.ini_options]\n"})

    venv, install = bare.setup_commands(HOME, {"pyproject.toml": b"[tool.pytest.ini_options]\n"})

    assert bare.needs_setup({})
    assert venv[1:3] == ["venv", "--no-project"]
    assert install[-1] == "pytest"
    assert bare.key_files({"pyproject.toml": b"[tool.pytest.ini_options]\n"}) == {}  # shared
    assert bare.test_command(HOME)[0] == f"{HOME}/venv/bin/python"
    assert f"--junitxml={JUNIT_FILE}" in bare.test_command(HOME)
    assert sys.executable not in bare.test_command(HOME)


def test_python_installs_pytest_the_requirements_and_the_project_editable_with_uv() -> None:
    files = {
        "requirements.txt": b"six\n",
        "requirements-test.txt": b"idna\n",
        "pyproject.toml": b'[project]\nname = "demo"\ndependencies = ["six"]\n',
    }
    python = python_for(files)
    assert python.interpreter is not None

    venv, install = python.setup_commands(HOME, files)

    assert venv[-3:] == ["--python", str(python.interpreter.executable), f"{HOME}/venv"]
    assert install[1:5] == ["pip", "install", "--python", f"{HOME}/venv/bin/python"]
    assert install[5:] == ["pytest", "-r", "requirements-test.txt", "-r", "requirements.txt", "-e", "."]
    assert python.key_files(files) == files
    assert python.interpreter.prefix in python.readonly_paths()


def test_python_paths_are_the_venv_and_the_system_never_the_platform() -> None:
    python = python_for({})
    offline = python.environment(HOME, WORKSPACE, online=False)
    online = python.environment(HOME, WORKSPACE, online=True)

    assert offline["PATH"].split(":")[0] == f"{HOME}/venv/bin"
    assert str(Path(sys.executable).parent) not in offline["PATH"].split(":")
    assert offline["VIRTUAL_ENV"] == f"{HOME}/venv"
    assert "UV_PYTHON_DOWNLOADS" not in offline
    assert online["UV_PYTHON_DOWNLOADS"] == "never"
    assert python.download_variables("/cache/uv") == {"UV_CACHE_DIR": "/cache/uv"}


def test_python_setup_messages_name_the_command_as_a_user_would_type_it() -> None:
    files = {"pyproject.toml": b'[project]\nname = "p"\noptional-dependencies = { test = ["x"] }\n'}

    make, install = python_for(files).setup_steps(HOME, files)

    assert make.shown.startswith("uv venv --python 3.")
    assert install.shown == "uv pip install pytest -e '.[test]'"
    assert "optional-dependencies" in install.purpose
    assert install.fallback is not None  # a flat pure-Python project can be tested from its checkout
    assert "-e" not in install.fallback.argv


def test_python_with_no_fitting_interpreter_is_unsupported_with_both_sides_named() -> None:
    files = {"pyproject.toml": b'[project]\nname = "p"\nrequires-python = ">=4.1"\n'}

    reason = python_for(files).unsupported(files)

    assert reason is not None
    assert ">=4.1" in reason
    assert "installed: 3." in reason


@pytest.mark.parametrize(
    ("exit_code", "untestable"),
    [(2, "pytest exit 2"), (3, "pytest exit 3"), (4, "pytest exit 4"), (5, None), (0, None)],
)
def test_python_untestable_follows_pytest_exit_codes(exit_code: int, untestable: str | None) -> None:
    baseline = {"exit_code": exit_code, "passed": 0, "failed": 0, "output_tail": "ERROR collecting x.py"}

    reason = toolchain_for(Language.python).untestable(baseline, "pytest -q")

    if untestable is None:
        assert reason is None
    else:
        assert reason is not None
        assert untestable in reason
        assert "`pytest -q`" in reason
        assert reason.endswith("ERROR collecting x.py")


def test_python_exit_5_is_no_tests_not_an_error() -> None:
    python = toolchain_for(Language.python)

    assert python.no_tests(5)
    assert not python.no_tests(1)
    assert not toolchain_for(Language.go).no_tests(5)


WRAPT_CONFTEST = """pluggy._manager.PluginValidationError: Plugin '/workspace/tests/conftest.py' for hook \
'pytest_pycollect_makemodule'
hookimpl definition: pytest_pycollect_makemodule(path, parent)"""
ENFORCED_DEPRECATION = "E   pytest.PytestRemovedIn10Warning: Passing a non-Collection iterable to parametrize"


def test_python_retries_an_older_pytest_major_at_a_time_when_pytest_says_the_suite_is_too_old() -> None:
    files = {"setup.py": b"from setuptools import setup\nsetup(name='p')\n"}
    python = python_for(files)
    cannot_run = {"exit_code": 2, "passed": 0, "failed": 0, "output_tail": ENFORCED_DEPRECATION}
    conftest = {"exit_code": 1, "passed": 0, "failed": 0, "output_tail": WRAPT_CONFTEST}

    first = python.retry(cannot_run)
    assert first is not None
    second = first.retry(conftest)
    assert second is not None

    assert [first.pytest_below, second.pytest_below] == list(OLDER_PYTEST)
    assert second.retry(conftest) is None  # no older major to try
    install = first.setup_steps(HOME, files)[1]
    assert install.argv[5] == "pytest<9"
    assert install.purpose.startswith("installing pytest<9 (the base commit's suite cannot run with")
    assert environment_key(first, files) != environment_key(python, files)
    assert python.retry({**cannot_run, "output_tail": "ModuleNotFoundError: No module named 'x'"}) is None
    # the suite ran: a deprecation warning in its output is the project's business
    assert (
        python.retry({"exit_code": 1, "passed": 3, "failed": 1, "output_tail": ENFORCED_DEPRECATION}) is None
    )


def test_python_collects_test_star_files_when_the_default_patterns_found_no_test() -> None:
    python = python_for({})

    wider = python.retry({"exit_code": 5, "passed": 0, "failed": 0, "output_tail": "no tests ran"})

    assert wider is not None
    assert ["-o", f"python_files={WIDER_PYTHON_FILES}"] == wider.test_command(HOME)[6:8]
    assert "-o" not in python.test_command(HOME)
    assert wider.retry({"exit_code": 5, "passed": 0, "failed": 0, "output_tail": ""}) is None
    assert python.retry({"exit_code": 0, "passed": 1, "failed": 0, "output_tail": ""}) is None


def test_node_uses_npm_ci_with_a_lock_file_and_keeps_node_modules() -> None:
    node = toolchain_for(Language.javascript)
    manifest = json.dumps({"dependencies": {"is-number": "7.0.0"}}).encode()

    assert node.setup_commands(HOME, {"package.json": manifest, "package-lock.json": b"{}"})[0][:2] == [
        "npm",
        "ci",
    ]
    assert node.setup_commands(HOME, {"package.json": manifest})[0][:2] == ["npm", "install"]
    assert not node.needs_setup({"package.json": json.dumps({"scripts": {"test": "node --test"}}).encode()})
    assert node.kept == ("node_modules",)
    assert node.environment(HOME, WORKSPACE, online=False)["npm_config_offline"] == "true"
    assert "npm_config_offline" not in node.environment(HOME, WORKSPACE, online=True)


def test_go_downloads_in_setup_and_tests_offline_against_the_module_cache() -> None:
    go = toolchain_for(Language.go)
    online = go.environment(HOME, WORKSPACE, online=True)
    offline = go.environment(HOME, WORKSPACE, online=False)

    # What the tests build, not `go mod download` (which Go 1.19 gets wrong for workspaces).
    assert go.setup_commands(HOME, {"go.mod": b"module x\n"}) == [["go", "list", "-deps", "-test", "./..."]]
    assert go.test_command(HOME) == ["go", "test", "-json", "./..."]
    assert online["GOMODCACHE"] == offline["GOMODCACHE"] == f"{HOME}/gomod"
    assert offline["GOPROXY"] == "off"
    assert "GOPROXY" not in online
    assert offline["GOCACHE"].startswith(f"{WORKSPACE}/.")  # writable, per run, skipped by ./...


def test_rust_fetches_in_setup_and_tests_offline() -> None:
    rust = toolchain_for(Language.rust)

    assert rust.setup_commands(HOME, {"Cargo.toml": b""}) == [["cargo", "fetch"]]
    assert rust.test_command(HOME) == ["cargo", "test", "--offline"]
    assert rust.environment(HOME, WORKSPACE, online=False)["CARGO_HOME"] == f"{HOME}/cargo"
    assert rust.environment(HOME, WORKSPACE, online=False)["CARGO_NET_OFFLINE"] == "true"


def test_the_key_depends_on_contents_language_and_toolchain_version() -> None:
    files = {"requirements.txt": b"six==1.17.0\n"}
    key = dependency_key("python", "3.11", files)

    assert key == dependency_key("python", "3.11", dict(files))
    assert key != dependency_key("python", "3.11", {"requirements.txt": b"six==1.16.0\n"})
    assert key != dependency_key("python", "3.12", files)
    assert key != dependency_key("go", "3.11", files)
    # A name/content boundary cannot be shifted to forge another file set's key.
    assert dependency_key("x", "v", {"ab": b"c"}) != dependency_key("x", "v", {"a": b"bc"})


def test_changed_files_lists_added_removed_and_modified() -> None:
    base = {"go.mod": b"a", "go.sum": b"b", "go.work": b"c"}
    patched = {"go.mod": b"a", "go.sum": b"B", "go.work.sum": b"d"}

    assert changed_files(base, patched) == ["go.sum", "go.work", "go.work.sum"]
    assert changed_files(base, dict(base)) == []


def test_environment_links_replace_what_the_workspace_had(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    (entry / "home").mkdir(parents=True)
    (entry / "node_modules" / "is-number").mkdir(parents=True)
    workdir = tmp_path / "work"
    (workdir / "node_modules").mkdir(parents=True)
    (workdir / ENV_DIR).write_text("planted by a patch")

    Environment(key="k", entry=entry, kept=("node_modules",)).link_into(workdir)

    assert (workdir / ENV_DIR).resolve() == entry / "home"
    assert (workdir / "node_modules" / "is-number").resolve() == entry / "node_modules" / "is-number"
    # a real directory of links: nyc can make node_modules/.cache beside the read-only packages
    assert not (workdir / "node_modules").is_symlink()


def test_an_npm_workspace_member_resolves_to_the_test_workspace_checkout(tmp_path: Path) -> None:
    entry = tmp_path / "entry"
    (entry / "home").mkdir(parents=True)
    (entry / "node_modules").mkdir()
    (entry / "node_modules" / "member").symlink_to("../packages/member")  # as npm links it
    workdir = tmp_path / "work"
    (workdir / "packages" / "member").mkdir(parents=True)

    Environment(key="k", entry=entry, kept=("node_modules",)).link_into(workdir)

    assert (workdir / "node_modules" / "member").resolve() == workdir / "packages" / "member"
    assert Environment(key="k").home(WORKSPACE) is None
    assert Environment(key="k", entry=entry).readonly_paths() == (entry,)


def test_workspace_path_and_read_only_binds_follow_the_sandbox(tmp_path: Path) -> None:
    process = ProcessSandbox()

    assert workspace_path(process, tmp_path) == str(tmp_path)
    assert with_readonly(process, [tmp_path]) is process
    no_cgroups = CgroupSupport(memory=None, pids=None, kill_parent=None)
    identity = Identity(host_uid=4242, host_gid=4242)
    bwrap = BwrapSandbox(readonly_paths=[], cgroup_support=no_cgroups, bwrap="true", identity=identity)
    assert workspace_path(bwrap, tmp_path) == WORKSPACE
    bound = with_readonly(bwrap, [tmp_path])
    assert isinstance(bound, BwrapSandbox)
    assert bound.describe()["readonly_paths"] == [str(tmp_path)]
    assert bound.network == bwrap.network
    assert bound.describe()["host_uid"] == 4242
