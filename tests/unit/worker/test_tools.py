import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from service_feature.models import TestResult
from service_feature.worker.tools import (
    MAX_ARGUMENT_CHARS,
    TOOL_NAMES,
    Toolbox,
    ToolOutcome,
    describe_command,
)


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
        "run_command",
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


@pytest.mark.parametrize(
    ("path", "broken", "fixed", "where"),
    [
        (
            "main.go",
            'package main\n\nfunc main() {\n\tprintln("x"\n}\n',
            "package main\n\nfunc main() {}\n",
            "line 4",
        ),
        (
            "src/a.ts",
            "export function f(a: number {\n  return a\n}\n",
            "export const f = (a: number) => a\n",
            "line 1",
        ),
        ("src/lib.rs", 'fn main() {\n    let x = 1\n    println!("{}", x);\n}\n', "fn main() {}\n", "line 2"),
        ("app.jsx", "const a = ;\n", "export const A = () => <div>hi</div>;\n", "line 1"),
    ],
)
async def test_syntax_errors_in_go_typescript_rust_and_javascript_are_reported_at_once(
    tools: Toolbox, path: str, broken: str, fixed: str, where: str
) -> None:
    outcome = await tools.call("write_file", {"path": path, "content": broken})
    assert not outcome.is_error
    assert f"warning: syntax error at {where}: " in outcome.content
    clean = await tools.call("write_file", {"path": path, "content": fixed})
    assert "warning" not in clean.content
    edited = await tools.call("edit_file", {"path": path, "old_str": fixed, "new_str": broken})
    assert f"warning: syntax error at {where}: " in edited.content


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


# -- hostile input: catastrophic patterns, slow walks, unexpected failures (issue 12, items 2 and 4) ------


@pytest.mark.timeout(60)  # Python's `re` would backtrack over this line for days
async def test_a_catastrophic_pattern_is_searched_in_linear_time(tools: Toolbox, repo: Path) -> None:
    (repo / "bomb.txt").write_text("a" * 64 + "!\n")
    outcome = await tools.call("search", {"pattern": "(a+)+$"})
    assert not outcome.is_error
    assert outcome.content == "no matches"


async def test_search_runs_off_the_event_loop(tools: Toolbox) -> None:
    order: list[str] = []

    async def other_service() -> None:
        order.append("other service")

    waiting = asyncio.create_task(other_service())
    await tools.call("search", {"pattern": "def"})
    order.append("search done")
    await waiting
    assert order == ["other service", "search done"]


@pytest.mark.parametrize("pattern", [r"(a)\1", r"def(?= one)", r"(?<!x)one"])
async def test_patterns_re2_cannot_run_are_errors_the_model_can_fix(tools: Toolbox, pattern: str) -> None:
    outcome = await tools.call("search", {"pattern": pattern})
    assert outcome.is_error
    assert "RE2 syntax" in outcome.content
    assert "b'" not in outcome.content  # RE2's message is shown as text, not as a bytes literal


async def test_a_walk_past_its_time_limit_stops_with_an_error(repo: Path) -> None:
    impatient = Toolbox(repo, _no_tests, time_limit=0)
    for name in ("search", "list_files"):
        outcome = await impatient.call(name, {"pattern": "x"} if name == "search" else {})
        assert outcome.is_error
        assert "time limit of 0 s" in outcome.content
    assert not (await impatient.call("read_file", {"path": "README.md"})).is_error  # no walk, no limit


async def test_walks_do_not_follow_links_out_of_the_repository(
    tools: Toolbox, repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("canary\n")
    os.symlink(tmp_path / "secret.txt", repo / "link.txt")
    os.symlink(repo / ".git" / "config", repo / "gitconfig")
    os.symlink("README.md", repo / "readme-link.md")
    search = await tools.call("search", {"pattern": "canary|core"})
    assert search.content == "no matches"
    listed = (await tools.call("list_files", {})).content.splitlines()
    assert "link.txt" not in listed
    assert "gitconfig" not in listed
    assert "readme-link.md" in listed  # a link inside the repository is a file like any other


def _error(outcome: ToolOutcome, root: Path) -> str:
    """The error text, checked to carry no host path and no raw control bytes."""
    assert outcome.is_error, outcome.content
    assert str(root) not in outcome.content
    assert all(c.isprintable() or c in "\n\t" for c in outcome.content), outcome.content
    return outcome.content


async def test_unexpected_failures_are_errors_the_model_sees(tools: Toolbox, repo: Path) -> None:
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 400)
    os.symlink("loop", repo / "loop")
    (repo / "pkg").mkdir()

    binary = await tools.call("edit_file", {"path": "logo.png", "old_str": "PNG", "new_str": "GIF"})
    assert "not UTF-8 text" in _error(binary, repo)
    under_a_file = await tools.call("write_file", {"path": "README.md/x.py", "content": "x = 1\n"})
    assert "'README.md' is a file" in _error(under_a_file, repo)
    for name, arguments in (
        ("read_file", {"path": "loop"}),
        ("write_file", {"path": "loop", "content": "x"}),
        ("edit_file", {"path": "loop", "old_str": "a", "new_str": "b"}),
        ("delete_file", {"path": "loop"}),
        ("search", {"pattern": "x", "path": "loop"}),
    ):
        assert "symlink loop" in _error(await tools.call(name, arguments), repo), name
    assert "loop" not in (await tools.call("list_files", {})).content
    directory = await tools.call("edit_file", {"path": "pkg", "old_str": "a", "new_str": "b"})
    assert "is not a file" in _error(directory, repo)
    wrong_type = await tools.call("write_file", {"path": "a.py", "content": 42})
    assert "content must be a string" in _error(wrong_type, repo)
    unparsable = await tools.call("write_file", {"path": "deep.py", "content": "a." * 200_000 + "b\n"})
    assert not unparsable.is_error  # written; Python's own limits are a warning, not a crash
    assert "cannot compile" in unparsable.content
    listed = await tools.call("list_files", {})
    assert "logo.png" in listed.content


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a file immutable")
async def test_a_permission_error_names_the_repository_path(tools: Toolbox, repo: Path) -> None:
    locked = repo / "src"
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        outcome = await tools.call("write_file", {"path": "src/new.py", "content": "x = 1\n"})
        deleted = await tools.call("delete_file", {"path": "src/app.py"})
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert _error(outcome, repo) == "write_file failed on 'src/new.py': Operation not permitted"
    assert _error(deleted, repo) == "delete_file failed on 'src/app.py': Operation not permitted"


async def test_a_name_that_is_not_utf8_is_listed_with_escapes(tools: Toolbox, repo: Path) -> None:
    with open(os.path.join(os.fsencode(repo), b"bad\xff.txt"), "wb") as file:
        file.write(b"x\n")
    listed = await tools.call("list_files", {})
    assert "bad\\xff.txt" in listed.content.splitlines()
    listed.content.encode("utf-8")  # storable and sendable: no lone surrogates


async def test_over_long_arguments_are_refused_unread(tools: Toolbox, repo: Path) -> None:
    huge = "x" * (MAX_ARGUMENT_CHARS + 1)
    for name, arguments in (
        ("write_file", {"path": "big.txt", "content": huge}),
        ("edit_file", {"path": "README.md", "old_str": "hello", "new_str": huge}),
        ("search", {"pattern": huge}),
    ):
        outcome = await tools.call(name, arguments)
        assert outcome.is_error
        assert f"over the limit of {MAX_ARGUMENT_CHARS:,}" in outcome.content
        assert len(outcome.content) < 300
    assert not (repo / "big.txt").exists()
    assert (repo / "README.md").read_text() == "hello\nworld\n"


async def test_search_matches_line_by_line_whatever_the_line_endings(tools: Toolbox, repo: Path) -> None:
    (repo / "crlf.txt").write_bytes(b"first\r\nsecond line\r\nthird\rfourth\n")
    assert (await tools.call("search", {"pattern": "line$"})).content == "crlf.txt:2: second line"
    assert (await tools.call("search", {"pattern": r"\Afourth"})).content == "crlf.txt:4: fourth"
    assert (
        await tools.call("search", {"pattern": "^third$", "glob": "*.txt"})
    ).content == "crlf.txt:3: third"
    assert (await tools.call("search", {"pattern": r"first\s+second"})).content == "no matches"


async def test_a_failed_test_run_is_an_error_without_host_paths(repo: Path) -> None:
    async def crashing() -> TestResult:
        raise RuntimeError(f"cannot read {repo}/src/app.py\x00 nor /var/lib/runs/x")

    outcome = await Toolbox(repo, crashing).call("run_tests", {})
    assert outcome.is_error
    assert outcome.content == "run_tests failed: RuntimeError: cannot read src/app.py\\x00 nor <path>"


async def test_run_command_goes_to_the_runner_with_its_timeout(repo: Path) -> None:
    calls: list[tuple[str, int]] = []

    async def run_command(command: str, timeout: int) -> str:
        calls.append((command, timeout))
        return "exit code 0\nok\n[no file in the repository changed]"

    tools = Toolbox(repo, _no_tests, run_command=run_command)
    outcome = await tools.call("run_command", {"command": "pytest -q tests/test_x.py"})
    assert (outcome.is_error, outcome.content) == (
        False,
        "exit code 0\nok\n[no file in the repository changed]",
    )
    await tools.call("run_command", {"command": "true", "timeout_seconds": 5})
    assert calls == [("pytest -q tests/test_x.py", 120), ("true", 5)]
    assert (await tools.call("run_command", {"command": "  "})).is_error
    assert (await tools.call("run_command", {"command": "true", "timeout_seconds": 0})).is_error
    assert (await tools.call("run_command", {})).is_error


async def test_run_command_without_an_executor_is_a_tool_error(tools: Toolbox) -> None:
    outcome = await tools.call("run_command", {"command": "true"})
    assert outcome.is_error
    assert "not available" in outcome.content


def test_a_commands_result_reads_how_it_ended_then_its_output() -> None:
    assert describe_command(1, False, 120, "E  assert 1 == 2\n", "changed: a.py") == (
        "exit code 1\nE  assert 1 == 2\n[changed: a.py]"
    )
    assert describe_command(None, True, 5, "", "no file in the repository changed").startswith(
        "timed out after 5 s (stopped)\n"
    )
