"""Parse a unified diff (as `git diff --binary` writes it) into changed files and their lines.

No diff library is installed (`unidiff` is not a dependency), and the scanners need only a little: each file's
old and new path, its status, whether it is binary, and the added lines with their line numbers in the patched
file (plus removed and context lines, which show what the base already had). The parser counts hunk lines
from the `@@` header instead of trusting prefixes, so a removed line such as `-- comment` or `++i` is never
mistaken for a file header. It also reads plain unified diffs without `diff --git` headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class FileStatus(StrEnum):
    added = "added"
    modified = "modified"
    deleted = "deleted"
    renamed = "renamed"
    copied = "copied"


@dataclass(frozen=True)
class DiffLine:
    number: int  # in the patched file for added lines, in the base file for removed and context lines
    text: str


@dataclass
class FileChange:
    """One file of the diff; `is_binary` is a flag beside the status (a binary file can be added, too)."""

    old_path: str | None
    new_path: str | None
    status: FileStatus = FileStatus.modified
    is_binary: bool = False
    added: list[DiffLine] = field(default_factory=list)
    removed: list[DiffLine] = field(default_factory=list)
    context: list[DiffLine] = field(default_factory=list)

    @property
    def path(self) -> str:
        """The path in the patched tree, or the old path of a deleted file."""
        path = self.new_path or self.old_path
        assert path is not None, "a diff entry always names at least one side"
        return path

    @property
    def added_numbers(self) -> frozenset[int]:
        return frozenset(line.number for line in self.added)

    @property
    def changed_lines(self) -> int:
        return len(self.added) + len(self.removed)

    @property
    def exists_after(self) -> bool:
        return self.status is not FileStatus.deleted


class DiffError(ValueError):
    """The text is not a unified diff this parser understands."""


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def parse_diff(text: str) -> list[FileChange]:
    """Every file the diff touches, in order. Raises `DiffError` on a malformed hunk."""
    files: list[FileChange] = []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    index = 0
    current: FileChange | None = None
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.startswith("diff --git "):
            current = FileChange(*_git_header_paths(line[len("diff --git ") :]))
            files.append(current)
        elif line.startswith("--- ") and index < len(lines) and lines[index].startswith("+++ "):
            if current is None or current.added or current.removed or current.context:
                current = FileChange(None, None)  # a plain unified diff: no `diff --git` header
                files.append(current)
            current.old_path = _side_path(line[4:], "a/")
            current.new_path = _side_path(lines[index][4:], "b/")
            index += 1
        elif current is None:
            continue  # a preamble (e.g. a commit message) before the first file
        elif line.startswith("@@ "):
            index = _read_hunk(lines, index, line, current)
        else:
            _read_header_line(line, current)
    for change in files:
        _settle_status(change)
    return files


def _read_header_line(line: str, change: FileChange) -> None:
    if line.startswith("new file mode"):
        change.status = FileStatus.added
    elif line.startswith("deleted file mode"):
        change.status = FileStatus.deleted
    elif line.startswith(("rename from ", "copy from ")):
        change.old_path = _unquote(line.split(" ", 2)[2])
        change.status = FileStatus.renamed if line.startswith("rename") else FileStatus.copied
    elif line.startswith(("rename to ", "copy to ")):
        change.new_path = _unquote(line.split(" ", 2)[2])
    elif line.startswith(("GIT binary patch", "Binary files ")):
        change.is_binary = True


def _read_hunk(lines: list[str], index: int, header: str, change: FileChange) -> int:
    match = _HUNK.match(header)
    if match is None:
        raise DiffError(f"malformed hunk header: {header!r}")
    old_number, new_number = int(match.group(1)), int(match.group(3))
    old_left = int(match.group(2) or "1")
    new_left = int(match.group(4) or "1")
    while old_left > 0 or new_left > 0:
        if index >= len(lines):
            raise DiffError(f"hunk of {change.path} ends early")
        line = lines[index]
        index += 1
        marker, body = line[:1], line[1:]
        if marker == "+":
            change.added.append(DiffLine(new_number, body))
            new_number += 1
            new_left -= 1
        elif marker == "-":
            change.removed.append(DiffLine(old_number, body))
            old_number += 1
            old_left -= 1
        elif marker in (" ", ""):  # some tools strip the space of an empty context line
            change.context.append(DiffLine(old_number, body))
            old_number += 1
            new_number += 1
            old_left -= 1
            new_left -= 1
        elif marker != "\\":  # "\ No newline at end of file" belongs to the line before it
            raise DiffError(f"unexpected line in a hunk of {change.path}: {line!r}")
    return index


def _settle_status(change: FileChange) -> None:
    if change.old_path is None and change.new_path is not None:
        change.status = FileStatus.added
    elif change.new_path is None and change.old_path is not None:
        change.status = FileStatus.deleted
    elif change.status is FileStatus.added:
        change.old_path = None
    elif change.status is FileStatus.deleted:
        change.new_path = None
    if change.old_path is None and change.new_path is None:
        raise DiffError("a diff entry names no file")


def _git_header_paths(rest: str) -> tuple[str | None, str | None]:
    """`a/x b/y` from a `diff --git` line; `---`/`+++` or rename lines refine it later when present."""
    if rest.startswith('"'):
        end = 1
        while rest[end] != '"':
            end += 2 if rest[end] == "\\" else 1
        old, new = rest[: end + 1], rest[end + 2 :]
    else:
        # Unquoted paths may hold spaces; with equal sides (all changes but renames) the split is the middle.
        half = (len(rest) - 1) // 2
        if rest[half] == " " and rest[2:half] == rest[half + 3 :]:
            old, new = rest[:half], rest[half + 1 :]
        else:
            old, _, new = rest.rpartition(' "b/' if rest.endswith('"') else " b/")
            new = ('"b/' if rest.endswith('"') else "b/") + new
    return _strip_prefix(_unquote(old), "a/"), _strip_prefix(_unquote(new), "b/")


def _side_path(raw: str, prefix: str) -> str | None:
    """The path of a `---`/`+++` line, without git's trailing tab or a plain diff's timestamp."""
    path = _unquote(raw.rstrip("\t") if raw.startswith('"') else raw.split("\t", 1)[0])
    return None if path == "/dev/null" else _strip_prefix(path, prefix)


def _strip_prefix(path: str, prefix: str) -> str:
    return path[len(prefix) :] if path.startswith(prefix) else path


def _unquote(path: str) -> str:
    """Undo git's C-style quoting (`"a/caf\\303\\251"`), which it uses for unusual characters."""
    if not (len(path) >= 2 and path.startswith('"') and path.endswith('"')):
        return path
    body, out, index = path[1:-1], bytearray(), 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out += char.encode()
            index += 1
        elif body[index + 1] in _ESCAPES:
            out.append(_ESCAPES[body[index + 1]])
            index += 2
        else:
            out.append(int(body[index + 1 : index + 4], 8))
            index += 4
    return out.decode("utf-8", errors="surrogateescape")
