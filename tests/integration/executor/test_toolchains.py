"""Real small projects, one per language, through TestRunner with the real bubblewrap sandbox: dependencies
installed by the networked setup step and cached, tests run without network, counted and named, and
compared with the base commit's results.

Each test has a cache of its own (so its first run is a miss) in its tmp_path. A missing toolchain skips its
test, unless SF_REQUIRE_TOOLCHAINS=1 (CI): then it fails.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from service_feature.executor.runner import RunSpec, TestRunner
from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.toolchains import toolchain_for
from service_feature.git import Git
from service_feature.models import Language, TestResult
from tests.support.projects import npm_project

LIMITS = Limits(wall_seconds=180, memory_mb=2048, pids=512, cpu_seconds=600, tmp_size_mb=512)


class Repository:
    """A throwaway origin repository; `diff(changes)` is the patch that writes `changes` over its HEAD."""

    def __init__(self, path: Path, files: dict[str, str]) -> None:
        self.path = path
        path.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")
        self._write(files)
        self._git("add", "-A")
        self._git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
        self.commit = self._git("rev-parse", "HEAD").strip()

    def diff(self, changes: dict[str, str]) -> str:
        self._write(changes)
        self._git("add", "-A")
        diff = self._git("diff", "--cached", "--binary")
        self._git("reset", "-q", "--hard")
        return diff

    def _write(self, files: dict[str, str]) -> None:
        for name, content in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(textwrap.dedent(content))

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.path, check=True, capture_output=True, text=True
        ).stdout


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def runner(bwrap_sandbox: BwrapSandbox, tmp_path: Path, cache_root: Path) -> TestRunner:
    git = Git(tmp_path / "executor", allow_local=True)
    return TestRunner(
        git,
        bwrap_sandbox,
        LIMITS,
        2,
        setup_sandbox=BwrapSandbox(network=True),
        cache_root=cache_root,
    )


def require(language: Language) -> None:
    missing = toolchain_for(language).missing()
    if missing is None:
        return
    if os.environ.get("SF_REQUIRE_TOOLCHAINS") == "1":
        pytest.fail(f"SF_REQUIRE_TOOLCHAINS=1 but {missing}")
    pytest.skip(missing)


def spec(repository: Repository, language: Language, diff: str = "", name: str = "f1") -> RunSpec:
    return RunSpec(
        execution_id=name,
        repository_url=str(repository.path),
        base_commit=repository.commit,
        diff=diff,
        language=language,
    )


def failing(result: TestResult) -> list[str]:
    return sorted(case.name for case in result.failures)


PYTHON = {
    "requirements.txt": "six==1.17.0\n",
    "test_app.py": """
        import socket

        import pytest
        import six


        def test_dependency_is_installed():
            assert six.PY3


        def test_fails():
            assert 1 == 2, "expected failure"


        def test_no_network():
            with pytest.raises(OSError):
                socket.create_connection(("pypi.org", 443), timeout=5)


        def test_the_installed_environment_is_read_only():
            with pytest.raises(OSError):
                open(six.__file__, "a")
    """,
}


async def test_python_requirements_are_installed_once_and_tests_have_no_network(
    runner: TestRunner, tmp_path: Path
) -> None:
    require(Language.python)
    repository = Repository(tmp_path / "python", PYTHON)
    new_requirement = repository.diff({"requirements.txt": "six==1.17.0\nidna==3.10\n"})

    first = await runner.run(spec(repository, Language.python))
    second = await runner.run(spec(repository, Language.python, new_requirement, name="f2"))

    assert (first.passed, first.failed, first.errored) == (3, 1, 0), first.output_tail
    assert failing(first) == ["test_app::test_fails"]
    assert first.environment is not None
    assert first.environment["installed"]
    assert not first.environment["cached"]
    assert first.baseline is not None
    assert first.classification["still_failing"] == ["test_app::test_fails"]
    assert first.succeeded  # its only failure was already there on the base
    assert first.dependency_files_changed == []
    # The second feature changes requirements.txt: flagged, and (by default) run in the base's environment.
    assert second.dependency_files_changed == ["requirements.txt"]
    assert second.environment == {**first.environment, "cached": True, "setup_seconds": 0.0}
    assert (second.passed, second.failed) == (3, 1)
    assert second.baseline is not None
    assert (first.baseline["cached"], second.baseline["cached"]) == (False, True)


NODE = {
    **npm_project("tiny"),
    "test/number.test.js": """
        const test = require('node:test');
        const assert = require('node:assert');
        const isNumber = require('is-number');

        test('recognises numbers', () => { assert.ok(isNumber(5)); });
        test('fails on purpose', () => { assert.strictEqual(isNumber('x'), true); });
        test('has no network', async () => {
          await assert.rejects(fetch('https://registry.npmjs.org/is-number'));
        });
    """,
}


async def test_node_modules_from_npm_ci_reach_the_tests(runner: TestRunner, tmp_path: Path) -> None:
    require(Language.javascript)
    repository = Repository(tmp_path / "node", NODE)

    first = await runner.run(spec(repository, Language.javascript))
    second = await runner.run(spec(repository, Language.javascript, name="f2"))

    assert (first.passed, first.failed) == (2, 1), first.output_tail
    assert failing(first) == ["fails on purpose"]
    assert "false" in first.failures[0].message
    assert first.environment is not None
    assert second.environment is not None
    assert (first.environment["cached"], second.environment["cached"]) == (False, True)
    assert (second.passed, second.failed) == (2, 1)


GO = {
    "go.mod": "module example.com/tiny\n\ngo 1.19\n",
    "tiny.go": "package tiny\n\nfunc Add(a, b int) int { return a + b }\n",
    "tiny_test.go": """
        package tiny

        import "testing"

        func TestAdd(t *testing.T) {
        \tif Add(1, 2) != 3 {
        \t\tt.Fatal("1 + 2")
        \t}
        }

        func TestBroken(t *testing.T) { t.Fatal("broken on purpose") }
    """,
}


async def test_go_module(runner: TestRunner, tmp_path: Path) -> None:
    require(Language.go)
    repository = Repository(tmp_path / "go", GO)

    first = await runner.run(spec(repository, Language.go))
    second = await runner.run(spec(repository, Language.go, name="f2"))

    assert (first.passed, first.failed) == (1, 1), first.output_tail
    assert failing(first) == ["example.com/tiny.TestBroken"]
    assert "broken on purpose" in first.failures[0].message
    assert second.environment is not None
    assert second.environment["cached"]


RUST = {
    "Cargo.toml": '[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n',
    "Cargo.lock": 'version = 3\n\n[[package]]\nname = "tiny"\nversion = "0.1.0"\n',
    "src/lib.rs": """
        pub fn add(a: i32, b: i32) -> i32 { a + b }

        #[cfg(test)]
        mod tests {
            #[test]
            fn adds() { assert_eq!(super::add(1, 2), 3); }

            #[test]
            fn fails() { assert_eq!(super::add(1, 1), 3, "one and one"); }
        }
    """,
}


async def test_rust_crate_with_the_toolchain_bound_read_only(runner: TestRunner, tmp_path: Path) -> None:
    require(Language.rust)
    repository = Repository(tmp_path / "rust", RUST)

    first = await runner.run(spec(repository, Language.rust))
    second = await runner.run(spec(repository, Language.rust, name="f2"))

    assert (first.passed, first.failed) == (1, 1), first.output_tail
    assert failing(first) == ["src/lib.rs::tests::fails"]
    assert "one and one" in first.failures[0].message
    assert second.environment is not None
    assert second.environment["cached"]


BASELINE = {
    "test_calc.py": """
        def test_old_failure():
            assert False, "failing before the patch"


        def test_to_fix():
            assert 1 + 1 == 3


        def test_passing():
            assert True
    """,
}


async def test_baseline_separates_pre_existing_failures_from_the_patch(
    runner: TestRunner, tmp_path: Path
) -> None:
    repository = Repository(tmp_path / "baseline", BASELINE)
    fixing = repository.diff(
        {
            "test_calc.py": BASELINE["test_calc.py"].replace("1 + 1 == 3", "1 + 1 == 2"),
            "test_new.py": "def test_added():\n    assert True\n",
        }
    )
    breaking = repository.diff(
        {"test_calc.py": BASELINE["test_calc.py"].replace("assert True", "assert False, 'broken'")}
    )

    fixed = await runner.run(spec(repository, Language.python, fixing))
    broken = await runner.run(spec(repository, Language.python, breaking, name="f2"))

    assert (fixed.passed, fixed.failed, fixed.exit_code) == (3, 1, 1)
    assert {name: names for name, names in fixed.classification.items() if names} == {
        "fixed": ["test_calc::test_to_fix"],
        "still_failing": ["test_calc::test_old_failure"],
        "still_passing": ["test_calc::test_passing"],
        "new_passing": ["test_new::test_added"],
    }
    assert fixed.baseline is not None
    assert (fixed.baseline["passed"], fixed.baseline["failed"]) == (1, 2)
    assert fixed.succeeded
    assert fixed.environment is not None
    assert fixed.environment["installed"]  # nothing to install: still a venv of its own, with pytest alone
    assert broken.classification["broken"] == ["test_calc::test_passing"]
    assert broken.baseline is not None
    assert broken.baseline["cached"]
    assert not broken.succeeded
