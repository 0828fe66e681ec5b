import os
from pathlib import Path

import pytest

from service_feature.models import TestResult
from service_feature.worker.tools import TOOL_NAMES, Toolbox


async def _no_tests() -> TestResult:
    return TestResult(command="pytest", sandbox="test", exit_code=0, passed=1)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "src" / "app.py").write_text("def one():\n    return 1\n\n\ndef two():\n    return 2\n")
    (root / "README.md").write_text("hello\nworld\n")
    return root


@pytest.fixture
def tools(repo: Path) -> Toolbox:
    return Toolbox(repo, _no_tests)


def test_tool_names_are_the_documented_ones() -> None:
    assert {
        "list_files",
        "read_file",
        "search",
        "write_file",
        "edit_file",
        "delete_file",
        "run_tests",
        "finish",
    } == TOOL_NAMES


async def test_list_files_skips_git(tools: Toolbox) -> None:
    outcome = await tools.call("list_files", {})
    assert outcome.content.splitlines() == ["README.md", "src/app.py"]


async def test_read_file_numbers_lines_and_slices(tools: Toolbox) -> None:
    outcome = await tools.call("read_file", {"path": "src/app.py", "start_line": 2, "end_line": 2})
    assert outcome.content.strip() == "2\t    return 1"


async def test_write_edit_delete(tools: Toolbox, repo: Path) -> None:
    assert not (await tools.call("write_file", {"path": "pkg/new.py", "content": "x = 1\n"})).is_error
    assert (repo / "pkg/new.py").read_text() == "x = 1\n"
    edited = await tools.call("edit_file", {"path": "pkg/new.py", "old_str": "x = 1", "new_str": "x = 2"})
    assert not edited.is_error
    assert (repo / "pkg/new.py").read_text() == "x = 2\n"
    assert not (await tools.call("delete_file", {"path": "pkg/new.py"})).is_error
    assert not (repo / "pkg/new.py").exists()


async def test_edit_needs_exactly_one_match(tools: Toolbox, repo: Path) -> None:
    several = await tools.call(
        "edit_file", {"path": "src/app.py", "old_str": "    return", "new_str": "  return"}
    )
    assert several.is_error
    assert "occurs 2 times" in several.content
    missing = await tools.call("edit_file", {"path": "src/app.py", "old_str": "def three():", "new_str": "x"})
    assert missing.is_error
    assert "not found" in missing.content
    assert "nearest lines" in missing.content
    assert "def one" in (repo / "src/app.py").read_text()


async def test_python_syntax_errors_are_reported_at_once(tools: Toolbox) -> None:
    outcome = await tools.call("write_file", {"path": "broken.py", "content": "def f(:\n"})
    assert not outcome.is_error
    assert "syntax error at line 1" in outcome.content


async def test_search_with_glob(tools: Toolbox) -> None:
    outcome = await tools.call("search", {"pattern": r"def \w+", "glob": "*.py"})
    assert outcome.content.splitlines() == ["src/app.py:1: def one():", "src/app.py:5: def two():"]
    assert (await tools.call("search", {"pattern": "("})).is_error


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../outside.txt", "leaves the repository"),
        ("/etc/passwd", "absolute"),
        (".git/config", "inside .git"),
        ("src/../../x", "leaves the repository"),
    ],
)
async def test_paths_that_leave_the_repository_are_refused(tools: Toolbox, path: str, message: str) -> None:
    for name, arguments in (("read_file", {"path": path}), ("write_file", {"path": path, "content": "x"})):
        outcome = await tools.call(name, arguments)
        assert outcome.is_error
        assert message in outcome.content


async def test_symlink_escape_is_refused(tools: Toolbox, repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("canary")
    os.symlink(secret, repo / "link.txt")
    os.symlink(repo / ".git", repo / "gitlink")
    read = await tools.call("read_file", {"path": "link.txt"})
    assert read.is_error
    assert "canary" not in read.content
    write = await tools.call("write_file", {"path": "gitlink/hooks/pre-commit", "content": "evil"})
    assert write.is_error
    assert not (repo / ".git" / "hooks").exists()


async def test_unknown_tool_and_bad_arguments_are_errors_the_model_sees(tools: Toolbox) -> None:
    unknown = await tools.call("rm_rf", {})
    assert unknown.is_error
    assert "unknown tool 'rm_rf'" in unknown.content
    bad = await tools.call("read_file", {"file": "x"})
    assert bad.is_error
    assert "bad arguments" in bad.content


async def test_run_tests_and_finish(tools: Toolbox) -> None:
    assert (await tools.call("run_tests", {})).content.startswith("PASSED: 1 passed")
    done = await tools.call("finish", {"summary": "ok"})
    assert done.finished
    assert done.content == "ok"
