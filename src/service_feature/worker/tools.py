"""The agent's tools, run for real on the feature's worktree.

Every path a model names is checked before use: it must stay inside the repository (no `..`, no absolute
path, no escape through a symlink) and out of `.git/`; a directory walk skips what leads out the same way.
A refused or failed call is not an exception for the agent loop: it becomes an error result the model sees
and can correct — whatever the failure (a binary file, a symlink loop, a permission), because an exception
escaping the loop would replay the whole agent, model calls and all. Error texts name repository-relative
paths only (never the host's) and carry no raw bytes.

The file tools run in a worker thread, one at a time, and stop at a time limit, so that a large repository
or a hostile one never holds the event loop that every service of the process shares. `search` uses RE2
(`google-re2`): linear time whatever the pattern, so `(a+)+$` cannot backtrack for minutes; the patterns
RE2 refuses (backreferences, lookaround) are a tool error the model can rewrite.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import stat
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import re2  # type: ignore[import-untyped]
import structlog

from service_feature.llm.base import ToolSpec
from service_feature.models import TestResult
from service_feature.worker import outline

_MAX_LISTED = 2000
_MAX_MATCHES = 200
_MAX_READ_BYTES = 200_000
_MAX_WRITE_BYTES = 2_000_000
_MAX_EDITED_BYTES = 10_000_000  # edit_file reads the whole file: larger ones are refused
_MAX_SEARCHED_BYTES = 2_000_000  # search skips larger files (generated data, not source)
MAX_ARGUMENT_CHARS = _MAX_WRITE_BYTES  # no tool needs a longer string; longer ones are refused unread
MAX_RESULT_CHARS = 200_000  # a result is cut in the middle beyond this (a list of very long paths)
FILE_TOOL_SECONDS = 30.0  # the time limit of one file tool call (a walk or a search of the repository)
_GRACE_SECONDS = 5.0  # past the limit, the call stops waiting for a thread that has not noticed it yet
_SHOWN_ERROR_CHARS = 300
_HOST_PATH = re.compile(r"(?<![\w.~-])/[^\s'\":,;)\]]+")  # an absolute path in an exception's text

log = structlog.get_logger(__name__)


class ToolError(Exception):
    """Shown to the model as the tool's (error) result."""


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False
    finished: bool = False


class ExtraTools(Protocol):
    """Tools from outside the platform (the operator's MCP servers)."""

    specs: list[ToolSpec]

    def handles(self, name: str) -> bool: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]: ...


TestRunner = Callable[[], Awaitable[TestResult]]
CommandRunner = Callable[[str, int], Awaitable[str]]  # (command, timeout seconds) -> what the model reads
DEFAULT_COMMAND_SECONDS = 120


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
        "run_command",
        "Run one shell command (sh -c) in the repository root, in the test sandbox with the project's "
        "environment and no network: reproduce a failure, run one test, check an import, run a linter. "
        f"timeout_seconds defaults to {DEFAULT_COMMAND_SECONDS}. Files it changes inside the repository "
        "are kept; anything outside is discarded.",
        _schema({"command": _STR, "timeout_seconds": _INT}, ["command"]),
    ),
    ToolSpec(
        "finish",
        "Declare the change complete, with a short summary.",
        _schema({"summary": _STR}, ["summary"]),
    ),
)
TOOL_NAMES = frozenset(spec.name for spec in TOOL_SPECS)


class Toolbox:
    def __init__(
        self,
        root: Path,
        run_tests: TestRunner,
        *,
        run_command: CommandRunner | None = None,
        time_limit: float = FILE_TOOL_SECONDS,
        extra: ExtraTools | None = None,
    ) -> None:
        self.root = root.resolve()
        self.extra = extra
        self._run_tests = run_tests
        self._run_command = run_command
        self._time_limit = time_limit
        # One file operation at a time: a thread the call stopped waiting for still holds it until it ends.
        self._lock = threading.Lock()
        self._deadline = 0.0

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """The tool's result; every failure, expected or not, is an error result for the model."""
        if self.extra is not None and self.extra.handles(name):
            return await self._call_extra(name, arguments)
        if name not in TOOL_NAMES:
            return ToolOutcome(
                _printable(f"unknown tool '{name[:100]}'; available: {', '.join(sorted(TOOL_NAMES))}"),
                is_error=True,
            )
        try:
            if name == "run_tests":
                return ToolOutcome(describe_tests(await self._run_tests()))
            check_arguments(name, arguments)
            if name == "run_command":
                return ToolOutcome(_printable(_bounded(await self._command(**arguments))))
            if name == "finish":
                return ToolOutcome(str(arguments.get("summary", "")), finished=True)
            return ToolOutcome(_bounded(await self._run_file_tool(name, arguments)))
        except ToolError as error:
            return ToolOutcome(_printable(_bounded(str(error))), is_error=True)
        except Exception as error:  # whatever failed, the model gets the failure and the agent goes on
            log.warning("worker.tool_failed", tool=name, error=type(error).__name__, exc_info=True)
            return ToolOutcome(self.describe_failure(name, arguments, error), is_error=True)

    @property
    def specs(self) -> list[ToolSpec]:
        """Every tool the model is offered: the platform's own, then the operator's MCP servers'."""
        return [*TOOL_SPECS, *(self.extra.specs if self.extra is not None else [])]

    async def _call_extra(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        assert self.extra is not None
        try:
            text, is_error = await self.extra.call(name, arguments)
        except Exception as error:  # a server that fails or dies: an error for the model, the agent goes on
            log.warning("worker.mcp_tool_failed", tool=name, error=repr(error))
            return ToolOutcome(_printable(f"{name} failed: {type(error).__name__}: {error}"), is_error=True)
        return ToolOutcome(_printable(_bounded(text)), is_error=is_error)

    async def _command(self, command: str, timeout_seconds: int = DEFAULT_COMMAND_SECONDS) -> str:
        if self._run_command is None:
            raise ToolError("run_command is not available here")
        if not command.strip():
            raise ToolError("command must not be empty")
        if timeout_seconds < 1:
            raise ToolError("timeout_seconds must be at least 1")
        return await self._run_command(command, timeout_seconds)

    async def _run_file_tool(self, name: str, arguments: dict[str, Any]) -> str:
        handler: Callable[..., str] = getattr(self, f"_{name}")
        work = asyncio.to_thread(self._run_locked, handler, arguments)
        try:
            return await asyncio.wait_for(work, self._time_limit + _GRACE_SECONDS)
        except TimeoutError:
            raise ToolError(_too_slow(name, self._time_limit)) from None

    def _run_locked(self, handler: Callable[..., str], arguments: dict[str, Any]) -> str:
        with self._lock:
            self._deadline = time.monotonic() + self._time_limit
            return handler(**arguments)

    def _check_time(self, name: str) -> None:
        """Called between files and lines of a walk: a walk past the time limit stops with an error."""
        if time.monotonic() > self._deadline:
            raise ToolError(_too_slow(name, self._time_limit))

    def describe_failure(self, name: str, arguments: dict[str, Any], error: Exception) -> str:
        """An unexpected failure as the model sees it: repository-relative paths, printable text only."""
        path = arguments.get("path")
        where = f" on '{path[:300]}'" if isinstance(path, str) else ""
        if isinstance(error, UnicodeDecodeError):
            return _printable(f"{name} failed{where}: the file is not UTF-8 text (a binary file?)")
        if isinstance(error, OSError) and error.strerror:
            detail = error.strerror
            culprit = self._shown_path(error.filename)
            if culprit and culprit != path:
                detail += f": '{culprit}'"
            return _printable(f"{name} failed{where}: {detail}")
        text = str(error).replace(f"{self.root}{os.sep}", "").replace(str(self.root), ".")
        text = _HOST_PATH.sub("<path>", text)
        return _printable(f"{name} failed{where}: {type(error).__name__}: {text}"[:_SHOWN_ERROR_CHARS])

    def _shown_path(self, filename: object) -> str | None:
        """`filename` relative to the repository; None for anything else (a host path is never shown)."""
        if not isinstance(filename, (str, os.PathLike)):
            return None
        path = Path(os.fsdecode(filename))
        if path == self.root or self.root in path.parents:
            return self._relative(path)
        return None

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
        try:
            target = (self.root / pure).resolve()
        except (RuntimeError, OSError):  # a symlink loop (RuntimeError up to Python 3.12)
            raise ToolError(f"'{path}' cannot be resolved: a symlink loop") from None
        if target != self.root and self.root not in target.parents:
            raise ToolError(f"'{path}' leads outside the repository through a symlink")
        if target.relative_to(self.root).parts[:1] == (".git",):
            raise ToolError(f"'{path}' leads into .git/ through a symlink")
        if must_exist and not target.exists():
            raise ToolError(f"'{path}' does not exist")
        return target

    def _relative(self, path: Path) -> str:
        """The path as the model names it; a name that is not UTF-8 shows its bytes as escapes."""
        relative = path.relative_to(self.root).as_posix()
        return relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    def _files(self, under: Path, name: str) -> Iterator[Path]:
        """The regular files under `under` (or `under` itself), those a symlink leads to included when they
        are in the repository; nothing from .git/, no directory walked twice (links are not followed)."""
        if under.is_file():
            yield under
            return
        for directory, subdirs, names in os.walk(under):
            self._check_time(name)
            subdirs[:] = sorted(d for d in subdirs if d != ".git")
            for entry in sorted(names):
                file = Path(directory) / entry
                if self._inside(file):
                    yield file

    def _inside(self, file: Path) -> bool:
        """A regular file, or a link to one inside the repository and outside .git/ (the walk itself
        follows no link, so only links need resolving; a fifo or a device is skipped)."""
        try:
            mode = file.lstat().st_mode
            if not stat.S_ISLNK(mode):
                return stat.S_ISREG(mode)
            target = file.resolve()
            regular = target.is_file()
        except (RuntimeError, OSError):  # a symlink loop, an unreadable link
            return False
        if not regular or (target != self.root and self.root not in target.parents):
            return False
        return target.relative_to(self.root).parts[:1] != (".git",)

    # -- tools -----------------------------------------------------------------------------------------

    def _list_files(self, path: str = ".") -> str:
        files = [self._relative(f) for f in self._files(self.resolve(path, must_exist=True), "list_files")]
        shown = "\n".join(files[:_MAX_LISTED])
        more = f"\n… and {len(files) - _MAX_LISTED} more" if len(files) > _MAX_LISTED else ""
        return (shown + more) or "(no files)"

    def _read_file(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        target = self.resolve(path, must_exist=True)
        if not target.is_file():
            raise ToolError(f"'{path}' is not a file")
        with target.open("rb") as file:
            data = file.read(_MAX_READ_BYTES)
        lines = data.decode("utf-8", errors="replace").splitlines()
        first = max(start_line or 1, 1)
        last = min(end_line or len(lines), len(lines))
        numbered = [f"{number:6}\t{lines[number - 1]}" for number in range(first, last + 1)]
        return "\n".join(numbered) or "(empty file)"

    def _search(self, pattern: str, path: str = ".", glob: str | None = None) -> str:
        regex = _compile_search(pattern)
        # One search of the whole file first: most files do not match, and one RE2 call per line costs
        # more than the search itself. A match inside a line is a match in the whole text, except with
        # \A, \z or a flag turned off: those patterns go line by line.
        line_only = any(part in pattern for part in ("\\A", "\\z", "(?-"))
        whole = None if line_only else _compile_search(f"(?m){pattern}")
        matches: list[str] = []
        for file in self._files(self.resolve(path, must_exist=True), "search"):
            relative = self._relative(file)
            if glob and not fnmatch(file.name, glob) and not fnmatch(relative, glob):
                continue
            lines = _source_text(file).splitlines()
            if whole is not None and not whole.search("\n".join(lines)):  # \r\n and \r end lines too
                continue
            for number, line in enumerate(lines, start=1):
                if number % 1000 == 0:
                    self._check_time("search")
                if regex.search(line):
                    matches.append(f"{relative}:{number}: {line.strip()[:300]}")
                    if len(matches) >= _MAX_MATCHES:
                        return "\n".join(matches) + "\n… (more matches not shown)"
        return "\n".join(matches) or "no matches"

    def _write_file(self, path: str, content: str) -> str:
        if len(content) > _MAX_WRITE_BYTES or len(content.encode()) > _MAX_WRITE_BYTES:
            raise ToolError(f"content is larger than {_MAX_WRITE_BYTES} bytes")
        target = self.resolve(path)
        if target.is_dir():
            raise ToolError(f"'{path}' is a directory")
        self._check_parents(path, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {path} ({len(content.splitlines())} lines)" + _syntax_note(target, content)

    def _check_parents(self, path: str, target: Path) -> None:
        """Every existing parent of `target` must be a directory: a file cannot hold another file."""
        for parent in target.parents:
            if parent == self.root:
                return
            if parent.exists() and not parent.is_dir():
                raise ToolError(f"'{self._relative(parent)}' is a file, so '{path}' cannot be created in it")

    def _edit_file(self, path: str, old_str: str, new_str: str) -> str:
        target = self.resolve(path, must_exist=True)
        if not target.is_file():
            raise ToolError(f"'{path}' is not a file")
        if target.stat().st_size > _MAX_EDITED_BYTES:
            raise ToolError(
                f"'{path}' is larger than {_MAX_EDITED_BYTES} bytes; edit_file edits source files"
            )
        try:
            text = target.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(
                f"'{path}' is not UTF-8 text (a binary file?); edit_file edits text only, "
                "write_file replaces a whole file"
            ) from None
        count = text.count(old_str) if old_str else 0
        if count != 1:
            raise ToolError(_edit_mismatch(path, text, old_str, count))
        updated = text.replace(old_str, new_str, 1)
        if len(updated.encode()) > _MAX_WRITE_BYTES:
            raise ToolError(f"the edited file would be larger than {_MAX_WRITE_BYTES} bytes")
        target.write_text(updated, encoding="utf-8")
        return f"edited {path}" + _syntax_note(target, updated)

    def _delete_file(self, path: str) -> str:
        target = self.resolve(path, must_exist=True)
        if not target.is_file():
            raise ToolError(f"'{path}' is not a file")
        target.unlink()
        return f"deleted {path}"


_TYPES = {"string": str, "integer": int}
_SIGNATURES = {spec.name: spec.parameters for spec in TOOL_SPECS}


def check_arguments(name: str, arguments: dict[str, Any]) -> None:
    """ToolError unless `arguments` fit the tool's schema: known names, the required ones, right types,
    strings no longer than MAX_ARGUMENT_CHARS (refused before any work is done on them)."""
    schema = _SIGNATURES[name]
    properties: dict[str, Any] = schema["properties"]
    unknown = sorted(str(key)[:60] for key in set(arguments) - set(properties))[:10]
    missing = sorted(set(schema["required"]) - set(arguments))
    if unknown or missing:
        raise ToolError(
            f"bad arguments for {name}: "
            + "; ".join(
                part
                for part in (
                    f"unknown {', '.join(unknown)}" if unknown else "",
                    f"missing {', '.join(missing)}" if missing else "",
                )
                if part
            )
            + f" (expected {', '.join(properties) or 'none'})"
        )
    for key, value in arguments.items():
        expected = properties[key]["type"]
        if not isinstance(value, _TYPES[expected]) or isinstance(value, bool):
            raise ToolError(f"bad arguments for {name}: {key} must be a {expected}")
        if isinstance(value, str) and len(value) > MAX_ARGUMENT_CHARS:
            raise ToolError(
                f"bad arguments for {name}: {key} has {len(value):,} characters, over the limit of "
                f"{MAX_ARGUMENT_CHARS:,}"
            )


def _compile_search(pattern: str) -> Any:
    """The pattern compiled by RE2; a pattern it cannot run is the model's error to fix."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "backslashreplace")
        raise ToolError(
            f"invalid or unsupported regular expression: {reason}. search uses RE2 syntax: no "
            "backreferences (\\1) and no lookaround ((?=…), (?!…), (?<=…), (?<!…))"
        ) from None


def _source_text(file: Path) -> str:
    """The file's text for a search; '' for what is not source: too large, binary, unreadable."""
    try:
        if file.stat().st_size > _MAX_SEARCHED_BYTES:
            return ""
        return file.read_bytes().decode("utf-8")
    except (UnicodeDecodeError, OSError):
        return ""


def _too_slow(name: str, limit: float) -> str:
    return f"{name} stopped after its time limit of {limit:g} s; narrow it with a path or a glob"


def _bounded(text: str) -> str:
    """`text`, cut in the middle beyond MAX_RESULT_CHARS."""
    if len(text) <= MAX_RESULT_CHARS:
        return text
    half = MAX_RESULT_CHARS // 2
    return f"{text[:half]}\n[… {len(text) - 2 * half:,} characters not shown …]\n{text[-half:]}"


def _printable(text: str) -> str:
    """`text` with control characters and undecodable bytes shown as escapes: an error message is read by
    a model and may become a feature's failure reason, neither of which should carry raw bytes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


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
    """Report a syntax error at once, so the model fixes it before running the tests: Python's compiler for
    Python, tree-sitter for Go, JavaScript/TypeScript and Rust."""
    if target.suffix in outline.SUFFIXES:
        problems = outline.syntax_errors(target.suffix, content.encode(errors="replace"))
        return "".join(f"\nwarning: syntax error at {problem}" for problem in problems)
    if target.suffix != ".py":
        return ""
    try:
        compile(content, str(target.name), "exec", dont_inherit=True)
    except SyntaxError as error:
        return f"\nwarning: syntax error at line {error.lineno}: {error.msg}"
    except (ValueError, RecursionError, MemoryError) as error:  # a null byte, nesting too deep to parse
        return f"\nwarning: Python cannot compile this file ({type(error).__name__})"
    return ""


def describe_command(
    result_exit: int | None, timed_out: bool, timeout: int, output: str, changes: str
) -> str:
    """A command's result as the model reads it: how it ended, its output, what it changed."""
    if timed_out:
        head = f"timed out after {timeout} s (stopped)"
    elif result_exit is None:
        head = "did not finish"
    else:
        head = f"exit code {result_exit}"
    return f"{head}\n{output.rstrip()}\n[{changes}]" if output.strip() else f"{head}\n[{changes}]"


def describe_tests(result: TestResult) -> str:
    head = (
        f"{'PASSED' if result.succeeded else 'FAILED'}: {result.passed} passed, {result.failed} failed, "
        f"{result.errored} errored, {result.skipped} skipped" + (" (timed out)" if result.timed_out else "")
    )
    failures = "\n".join(f"- {case.name}: {case.message[:500]}" for case in result.failures[:20])
    return "\n".join(part for part in (head, failures, "output (tail):", result.output_tail[-4000:]) if part)
