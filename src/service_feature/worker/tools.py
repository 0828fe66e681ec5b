"""The agent's tools, run for real on the feature's worktree.

Every path a model names is checked before use: it must stay inside the repository (no `..`, no absolute
path, no escape through a symlink) and out of `.git/`. A refused or failed call is not an exception for
the agent loop: it becomes an error result the model sees and can correct.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

from service_feature.llm.base import ToolSpec
from service_feature.models import TestResult

_MAX_LISTED = 2000
_MAX_MATCHES = 200
_MAX_READ_BYTES = 200_000
_MAX_WRITE_BYTES = 2_000_000


class ToolError(Exception):
    """Shown to the model as the tool's (error) result."""


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False
    finished: bool = False


TestRunner = Callable[[], Awaitable[TestResult]]


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_STR = {"type": "string"}
_INT = {"type": "integer", "minimum": 1}

TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec("list_files", "List the repository's files under a directory.", _schema({"path": _STR}, [])),
    ToolSpec(
        "read_file",
        "Read a file, with line numbers; optionally only lines start_line..end_line.",
        _schema({"path": _STR, "start_line": _INT, "end_line": _INT}, ["path"]),
    ),
    ToolSpec(
        "search",
        "Search file contents with a regular expression; optionally under a path and for a filename glob.",
        _schema({"pattern": _STR, "path": _STR, "glob": _STR}, ["pattern"]),
    ),
    ToolSpec(
        "write_file",
        "Create or overwrite a file.",
        _schema({"path": _STR, "content": _STR}, ["path", "content"]),
    ),
    ToolSpec(
        "edit_file",
        "Replace old_str by new_str in a file; old_str must occur exactly once.",
        _schema({"path": _STR, "old_str": _STR, "new_str": _STR}, ["path", "old_str", "new_str"]),
    ),
    ToolSpec("delete_file", "Delete a file.", _schema({"path": _STR}, ["path"])),
    ToolSpec(
        "run_tests", "Run the repository's test suite in the sandbox and return the result.", _schema({}, [])
    ),
    ToolSpec(
        "finish",
        "Declare the change complete, with a short summary.",
        _schema({"summary": _STR}, ["summary"]),
    ),
)
TOOL_NAMES = frozenset(spec.name for spec in TOOL_SPECS)


class Toolbox:
    def __init__(self, root: Path, run_tests: TestRunner) -> None:
        self.root = root.resolve()
        self._run_tests = run_tests

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        if name not in TOOL_NAMES:
            return ToolOutcome(
                f"unknown tool '{name}'; available: {', '.join(sorted(TOOL_NAMES))}", is_error=True
            )
        try:
            if name == "run_tests":
                return ToolOutcome(describe_tests(await self._run_tests()))
            if name == "finish":
                return ToolOutcome(str(arguments.get("summary", "")), finished=True)
            handler: Callable[..., str] = getattr(self, f"_{name}")
            return ToolOutcome(handler(**arguments))
        except ToolError as error:
            return ToolOutcome(str(error), is_error=True)
        except TypeError as error:  # wrong or missing arguments
            return ToolOutcome(f"bad arguments for {name}: {error}", is_error=True)

    # -- path safety -----------------------------------------------------------------------------------

    def resolve(self, path: str, *, must_exist: bool = False) -> Path:
        if not isinstance(path, str) or not path:
            raise ToolError("path must be a non-empty string")
        pure = PurePosixPath(path)
        if pure.is_absolute():
            raise ToolError(f"'{path}' is absolute: paths are relative to the repository root")
        if ".." in pure.parts:
            raise ToolError(f"'{path}' leaves the repository")
        if pure.parts and pure.parts[0] == ".git":
            raise ToolError(f"'{path}' is inside .git/, which the agent may not touch")
        target = (self.root / pure).resolve()
        if target != self.root and self.root not in target.parents:
            raise ToolError(f"'{path}' leads outside the repository through a symlink")
        if target.relative_to(self.root).parts[:1] == (".git",):
            raise ToolError(f"'{path}' leads into .git/ through a symlink")
        if must_exist and not target.exists():
            raise ToolError(f"'{path}' does not exist")
        return target

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _files(self, under: Path) -> list[Path]:
        if under.is_file():
            return [under]
        found: list[Path] = []
        for directory, subdirs, names in os.walk(under):
            subdirs[:] = sorted(d for d in subdirs if d != ".git")
            found.extend(Path(directory) / name for name in sorted(names))
        return found

    # -- tools -----------------------------------------------------------------------------------------

    def _list_files(self, path: str = ".") -> str:
        files = [self._relative(f) for f in self._files(self.resolve(path, must_exist=True))]
        shown = "\n".join(files[:_MAX_LISTED])
        more = f"\n… and {len(files) - _MAX_LISTED} more" if len(files) > _MAX_LISTED else ""
        return (shown + more) or "(no files)"

    def _read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        target = self.resolve(path, must_exist=True)
        if not target.is_file():
            raise ToolError(f"'{path}' is not a file")
        data = target.read_bytes()[:_MAX_READ_BYTES]
        lines = data.decode("utf-8", errors="replace").splitlines()
        first = max(start_line or 1, 1)
        last = min(end_line or len(lines), len(lines))
        numbered = [f"{number:6}\t{lines[number - 1]}" for number in range(first, last + 1)]
        return "\n".join(numbered) or "(empty file)"

    def _search(self, pattern: str, path: str = ".", glob: str | None = None) -> str:
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise ToolError(f"invalid regular expression: {error}") from None
        matches: list[str] = []
        for file in self._files(self.resolve(path, must_exist=True)):
            if glob and not fnmatch(file.name, glob) and not fnmatch(self._relative(file), glob):
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if regex.search(line):
                    matches.append(f"{self._relative(file)}:{number}: {line.strip()[:300]}")
                    if len(matches) >= _MAX_MATCHES:
                        return "\n".join(matches) + "\n… (more matches not shown)"
        return "\n".join(matches) or "no matches"

    def _write_file(self, path: str, content: str) -> str:
        if len(content.encode()) > _MAX_WRITE_BYTES:
            raise ToolError(f"content is larger than {_MAX_WRITE_BYTES} bytes")
        target = self.resolve(path)
        if target.is_dir():
            raise ToolError(f"'{path}' is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {path} ({len(content.splitlines())} lines)" + _syntax_note(target, content)

    def _edit_file(self, path: str, old_str: str, new_str: str) -> str:
        target = self.resolve(path, must_exist=True)
        text = target.read_text(encoding="utf-8")
        count = text.count(old_str) if old_str else 0
        if count != 1:
            raise ToolError(_edit_mismatch(path, text, old_str, count))
        updated = text.replace(old_str, new_str, 1)
        target.write_text(updated, encoding="utf-8")
        return f"edited {path}" + _syntax_note(target, updated)

    def _delete_file(self, path: str) -> str:
        target = self.resolve(path, must_exist=True)
        if not target.is_file():
            raise ToolError(f"'{path}' is not a file")
        target.unlink()
        return f"deleted {path}"


def _edit_mismatch(path: str, text: str, old_str: str, count: int) -> str:
    if not old_str:
        return "old_str must not be empty"
    if count > 1:
        at = [n for n, line in enumerate(text.splitlines(), 1) if old_str.splitlines()[0] in line]
        return f"old_str occurs {count} times in {path} (lines {at[:10]}); include more context"
    first = old_str.strip().splitlines()[0].strip() if old_str.strip() else old_str
    lines = text.splitlines()
    stripped = [line.strip() for line in lines]
    close = difflib.get_close_matches(first, stripped, n=3, cutoff=0.5)
    near = [
        f"{number}: {lines[number - 1]}"
        for number in range(1, len(lines) + 1)
        if stripped[number - 1] in close
    ]
    hint = ("; nearest lines:\n" + "\n".join(near[:5])) if near else ""
    return f"old_str was not found in {path}{hint}"


def _syntax_note(target: Path, content: str) -> str:
    """Report a Python syntax error at once, so the model fixes it before running the tests."""
    if target.suffix != ".py":
        return ""
    try:
        compile(content, str(target.name), "exec", dont_inherit=True)
    except SyntaxError as error:
        return f"\nwarning: syntax error at line {error.lineno}: {error.msg}"
    return ""


def describe_tests(result: TestResult) -> str:
    head = (
        f"{'PASSED' if result.succeeded else 'FAILED'}: {result.passed} passed, {result.failed} failed, "
        f"{result.errored} errored, {result.skipped} skipped" + (" (timed out)" if result.timed_out else "")
    )
    failures = "\n".join(f"- {case.name}: {case.message[:500]}" for case in result.failures[:20])
    return "\n".join(part for part in (head, failures, "output (tail):", result.output_tail[-4000:]) if part)
