"""The agent's `run_command` through TestRunner and the real bubblewrap sandbox: the project's environment,
no network, the command's own timeout, and only the repository's changes coming back (never the
environment's links, never anything outside)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service_feature.diffs import parse_diff
from service_feature.events import CommandSpec
from service_feature.executor.runner import TestRunner
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.git import Git
from service_feature.models import Language
from tests.integration.executor.test_toolchains import LIMITS, Repository, spec

pytestmark = pytest.mark.xdist_group("python-projects")

PROJECT = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    "tests/test_other.py": "def test_other():\n    assert True\n",
}


@pytest.fixture
def runner(bwrap_sandbox: BwrapSandbox, tmp_path: Path) -> TestRunner:
    git = Git(tmp_path / "executor", allow_local=True)
    return TestRunner(
        git, bwrap_sandbox, LIMITS, 2, setup_sandbox=BwrapSandbox(network=True), cache_root=tmp_path / "cache"
    )


def command(repository: Repository, line: str, *, diff: str = "", timeout: int = 60) -> CommandSpec:
    run = spec(repository, Language.python, diff=diff)
    return CommandSpec(run=run, command=line, timeout_seconds=timeout)


async def test_one_test_runs_in_the_projects_environment(runner: TestRunner, tmp_path: Path) -> None:
    repository = Repository(tmp_path / "origin", PROJECT)
    result = await runner.run_command(command(repository, "python -m pytest -q tests/test_calc.py"))

    assert result.error is None, result.error
    assert result.exit_code == 1
    assert "assert -1 == 5" in result.output
    assert "1 failed" in result.output
    assert "test_other" not in result.output
    assert result.diff == ""  # nothing changed: not even the environment's links show


async def test_files_changed_in_the_repository_come_back_as_a_diff_on_top_of_the_tree(
    runner: TestRunner, tmp_path: Path
) -> None:
    repository = Repository(tmp_path / "origin", PROJECT)
    fixed = repository.diff({"calc.py": "def add(a, b):\n    return a + b\n"})
    line = "echo 'x = 1' > generated.py && sed -i 's/a + b/b + a/' calc.py && echo outside > /tmp/outside.txt"
    result = await runner.run_command(command(repository, line, diff=fixed))

    assert (result.error, result.exit_code) == (None, 0), result.output
    assert result.diff is not None
    changes = {change.path: change for change in parse_diff(result.diff)}
    assert sorted(changes) == ["calc.py", "generated.py"]  # /tmp is the sandbox's own, gone with it
    assert [line.text for line in changes["calc.py"].added] == ["    return b + a"]


async def test_no_network_and_the_commands_own_timeout(runner: TestRunner, tmp_path: Path) -> None:
    repository = Repository(tmp_path / "origin", PROJECT)
    offline = await runner.run_command(
        command(repository, "python -c \"import urllib.request; urllib.request.urlopen('https://pypi.org')\"")
    )
    assert offline.exit_code not in (0, None)
    assert "urlopen error" in offline.output or "Network is unreachable" in offline.output

    slow = await runner.run_command(command(repository, "sleep 30", timeout=1))
    assert slow.timed_out
    assert slow.diff == ""


async def test_a_command_cannot_point_git_at_a_repository_of_its_making(
    runner: TestRunner, tmp_path: Path
) -> None:
    """The command may rewrite the worktree's `.git` file; the diff after it must still read the real git
    directory, never a config the command wrote (core.fsmonitor runs a command on the host)."""
    repository = Repository(tmp_path / "origin", PROJECT)
    marker = tmp_path / "pwned"
    evil = (
        "mkdir -p evil/objects evil/refs/heads && echo 'ref: refs/heads/main' > evil/HEAD && "
        f"printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {marker}\\n' "
        "> evil/config && "
        "printf 'gitdir: evil\\n' > .git && echo changed > calc.py"
    )
    result = await runner.run_command(command(repository, evil))

    assert not marker.exists()
    assert (result.error, result.exit_code) == (None, 0), result.output
    assert result.diff is not None
    paths = sorted(change.path for change in parse_diff(result.diff))
    assert paths == ["calc.py", "evil/HEAD", "evil/config"]  # files like any other, judged by the checks
