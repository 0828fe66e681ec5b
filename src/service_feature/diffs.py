"""Parse a git diff (as `git diff --binary` writes it) into the files it changes: one parser for every reader.

The patch checks (`patchcheck`) and the reviewer's scanners read the same model-written patch, so they must
agree on which paths it touches; this module is the one place that decides. It reads what `git apply`
reads: each file's old and new path, its status, its git modes (a symbolic link is mode 120000), whether it
is binary, and the hunks' lines with their line numbers. It also reads plain unified diffs without
`diff --git` headers, as `git apply` does.

Written by hand rather than on a diff library: `unidiff` 1.0.1 (the maintained one on PyPI) splits
`diff --git a/p b/q b/p b/q` at the last ` b/` and then raises on the `+++ b/p b/q` line that disagrees
with it, keeps C-quoted names quoted (`"a/caf\\303\\251"`), and does not read `rename from`/`copy from`
lines, so it cannot tell real git output apart for the names a model can write.

How names are resolved, as `git apply` does it (apply.c): the `diff --git a/X b/Y` line is ambiguous when
names hold ` b/`, so the names come from the `rename`/`copy` lines and the `---`/`+++` lines (git ends an
unquoted name that holds a space with a tab there, and C-quotes any name with a tab, newline, quote,
backslash or byte outside ASCII). The `diff --git` line is used only when nothing else names the file, and
then only when both halves name the same file, which is the case for every change but a rename or a copy
(and those always have their `rename`/`copy` lines). Two sources that disagree, or a file no line names
unambiguously, make the diff invalid (`DiffError`), as `git apply` refuses it. Names are decoded with
`surrogateescape`, so a non-UTF-8 name comes back as `os.fsdecode` of its bytes.

Hunk lines are counted from the `@@` header rather than recognised by their first character, so a removed
line such as `-- comment` is never taken for a `---` header. Lines are split at `\\n` only, as git does (not
at the other line breaks `str.splitlines` knows, which a file's content may hold).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

SYMLINK_MODE = "120000"
DEV_NULL = "/dev/null"


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
    old_mode: str | None = None  # git's mode, e.g. "100644"; None when the diff does not say
    new_mode: str | None = None
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

    @property
    def leaves_symlink(self) -> bool:
        """The patched tree has a symbolic link at `new_path`."""
        return self.exists_after and self.new_mode == SYMLINK_MODE


class DiffError(ValueError):
    """The text is not a diff this parser (and `git apply`) can read unambiguously."""


@dataclass
class _Names:
    """What the lines of one file's header say about its names, before they are reconciled."""

    header: str | None = None  # the text after `diff --git `; None for a plain unified diff
    minus: str | None = None  # the `---` line's name (DEV_NULL for none), prefix removed
    plus: str | None = None
    source: str | None = None  # `rename from` / `copy from`
    target: str | None = None
    has_sides: bool = False  # the `---`/`+++` pair was read


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# A line of a `GIT binary patch` block: a length character, then base85 (git's alphabet has no space).
_BINARY_DATA = re.compile(r"^[A-Za-z][0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~]+$")
_BINARY_BLOCK = re.compile(r"^(?:literal|delta) \d+$")
_OCTAL = re.compile(r"[0-7]{1,3}")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def parse_diff(text: str, *, strict: bool = True) -> list[FileChange]:
    """Every file the diff touches, in order. Raises `DiffError` when a name is ambiguous or inconsistent.

    `strict=False` reads a hunk that is shorter than its `@@` header says by ending it at the first line
    that cannot belong to it and reading on, so a truncated hunk never hides the file header after it
    (the patch checks want every path a crafted patch names); `strict=True` raises instead."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    parser = _Parser(lines, strict)
    return parser.parse()


class _Parser:
    def __init__(self, lines: list[str], strict: bool) -> None:
        self.lines = lines
        self.strict = strict
        self.index = 0
        self.files: list[tuple[FileChange, _Names]] = []

    def parse(self) -> list[FileChange]:
        while self.index < len(self.lines):
            line = self._next()
            if line.startswith("diff --git "):
                self._start(_Names(header=line[len("diff --git ") :]))
            elif line.startswith("--- ") and self._peek().startswith("+++ "):
                self._read_sides(line, self._next())
            elif not self.files:
                continue  # a preamble (e.g. a commit message) before the first file
            elif line.startswith("@@ "):
                self._read_hunk(line)
            elif line == "GIT binary patch":
                self._current.is_binary = True
                self._skip_binary_blocks()
            else:
                self._read_header_line(line)
        return [_settle(change, names) for change, names in self.files]

    @property
    def _current(self) -> FileChange:
        return self.files[-1][0]

    def _next(self) -> str:
        self.index += 1
        return self.lines[self.index - 1]

    def _peek(self) -> str:
        return self.lines[self.index] if self.index < len(self.lines) else ""

    def _start(self, names: _Names) -> None:
        self.files.append((FileChange(None, None), names))

    def _read_sides(self, minus: str, plus: str) -> None:
        """A `---`/`+++` pair: part of the current git header, or the start of a plain unified diff."""
        if not self.files or self._in_body():
            self._start(_Names())
        names = self.files[-1][1]
        names.minus, names.plus, names.has_sides = _side(minus[4:], "a/"), _side(plus[4:], "b/"), True

    def _in_body(self) -> bool:
        """The current file is past its header (a second `---`/`+++` pair starts another file)."""
        change, names = self.files[-1]
        return names.header is None or names.has_sides or change.is_binary or bool(change.changed_lines)

    def _read_header_line(self, line: str) -> None:
        change, names = self.files[-1]
        word, _, rest = line.partition(" ")
        if line.startswith("new file mode "):
            change.status, change.new_mode = FileStatus.added, rest.rsplit(" ", 1)[-1]
        elif line.startswith("deleted file mode "):
            change.status, change.old_mode = FileStatus.deleted, rest.rsplit(" ", 1)[-1]
        elif line.startswith("old mode "):
            change.old_mode = rest[len("mode ") :]
        elif line.startswith("new mode "):
            change.new_mode = rest[len("mode ") :]
        elif line.startswith("index ") and rest.count(" ") == 1:
            mode = rest.split(" ")[1]  # an unchanged mode, written on the index line
            change.old_mode, change.new_mode = change.old_mode or mode, change.new_mode or mode
        elif line.startswith(("rename from ", "copy from ")):
            names.source = _unquote(line.split(" ", 2)[2])
            change.status = FileStatus.renamed if word == "rename" else FileStatus.copied
        elif line.startswith(("rename to ", "copy to ")):
            names.target = _unquote(line.split(" ", 2)[2])
        elif line.startswith("Binary files "):
            change.is_binary = True

    def _read_hunk(self, header: str) -> None:
        change = self._current
        match = _HUNK.match(header)
        if match is None:
            raise DiffError(f"malformed hunk header: {header!r}")
        old_number, new_number = int(match.group(1)), int(match.group(3))
        old_left, new_left = int(match.group(2) or "1"), int(match.group(4) or "1")
        while old_left > 0 or new_left > 0:
            if self.index >= len(self.lines):
                if self.strict:
                    raise DiffError(f"a hunk of {_label(self.files[-1][1])} ends early")
                return
            line = self.lines[self.index]
            marker, body = line[:1], line[1:]
            if marker == "+" and new_left > 0:
                change.added.append(DiffLine(new_number, body))
                new_number, new_left = new_number + 1, new_left - 1
            elif marker == "-" and old_left > 0:
                change.removed.append(DiffLine(old_number, body))
                old_number, old_left = old_number + 1, old_left - 1
            elif marker in (" ", "") and old_left > 0 and new_left > 0:
                # some tools strip the space of an empty context line
                change.context.append(DiffLine(old_number, body))
                old_number, new_number = old_number + 1, new_number + 1
                old_left, new_left = old_left - 1, new_left - 1
            elif marker != "\\":  # "\ No newline at end of file" belongs to the line before it
                if self.strict:
                    raise DiffError(f"unexpected line in a hunk of {_label(self.files[-1][1])}: {line!r}")
                return  # the line is read again as a header line
            self.index += 1
        if self._peek().startswith("\\"):
            self.index += 1  # the marker after a hunk's last line

    def _skip_binary_blocks(self) -> None:
        """Skip the `literal`/`delta` blocks of a binary patch, and nothing else: a line that is not base85
        data ends the patch, so no header can hide inside it."""
        while _BINARY_BLOCK.match(self._peek()):
            self.index += 1
            while _BINARY_DATA.match(self._peek()):
                self.index += 1
            if self.index < len(self.lines) and self._peek() == "":
                self.index += 1


def _settle(change: FileChange, names: _Names) -> FileChange:
    """Fill in the names and the status from what the header lines said, or raise `DiffError`."""
    header = _header_name(names.header) if names.header is not None else None
    old = _agreed("old", names.source, names.minus, names)
    new = _agreed("new", names.target, names.plus, names)
    if change.status in (FileStatus.renamed, FileStatus.copied):
        if names.source is None or names.target is None:
            raise DiffError(f"{_label(names)}: a {change.status.value} file lacks its from/to lines")
    else:
        for side in (old, new):
            if header is not None and side not in (None, DEV_NULL, header):
                raise DiffError(f"inconsistent names: {side!r} in a diff of {header!r}")
        old = header if old is None else old
        new = header if new is None else new
    if old is None and new is None:
        raise DiffError(f"the diff header {_label(names)!r} names no file unambiguously")
    change.old_path = None if old in (None, DEV_NULL) else old
    change.new_path = None if new in (None, DEV_NULL) else new
    _settle_status(change)
    return change


def _agreed(side: str, extended: str | None, unified: str | None, names: _Names) -> str | None:
    """One side's name from the `rename`/`copy` line and the `---`/`+++` line, which must agree."""
    if extended is not None and unified not in (None, DEV_NULL, extended):
        raise DiffError(f"inconsistent {side} names in {_label(names)!r}: {extended!r} and {unified!r}")
    return extended if extended is not None else unified


def _settle_status(change: FileChange) -> None:
    if change.old_path is None and change.new_path is None:
        raise DiffError("a diff entry names no file")
    if change.old_path is None:
        change.status = FileStatus.added
    elif change.new_path is None:
        change.status = FileStatus.deleted
    elif change.status is FileStatus.added:
        change.old_path = None
    elif change.status is FileStatus.deleted:
        change.new_path = None


def _label(names: _Names) -> str:
    return names.header or names.plus or names.minus or "a file"


def _header_name(rest: str) -> str | None:
    """The one name of `a/X b/X` on a `diff --git` line, or None when the halves name different files
    (a rename or copy) or the split is ambiguous."""
    if rest.startswith('"'):
        first, remainder = _take_quoted(rest)
        if not remainder.startswith(" "):
            return None
        second = remainder[1:]
    elif rest.endswith('"') and ' "' in rest:
        # an unquoted name never holds a quote (git would quote it), so the first ` "` splits the line
        first, _, second = rest.partition(' "')
        second = '"' + second
    else:
        # Unquoted names may hold spaces and ` b/`; equal halves can only split in the middle.
        half = (len(rest) - 1) // 2
        if len(rest) % 2 == 0 or rest[half] != " ":
            return None
        first, second = rest[:half], rest[half + 1 :]
    old, new = _strip_prefix(first, "a/"), _strip_prefix(_unquote(second), "b/")
    return old if old == new else None


def _side(raw: str, prefix: str) -> str:
    """The name on a `---`/`+++` line: C-quoted, or unquoted up to git's tab (or a plain diff's timestamp)."""
    name = _take_quoted(raw)[0] if raw.startswith('"') else raw.split("\t", 1)[0]
    return name if name == DEV_NULL else _strip_prefix(name, prefix)


def _strip_prefix(path: str, prefix: str) -> str:
    return path[len(prefix) :] if path.startswith(prefix) else path


def _unquote(text: str) -> str:
    return _take_quoted(text)[0] if text.startswith('"') else text


def _take_quoted(text: str) -> tuple[str, str]:
    """Decode a C-quoted name as git writes it (`"a/caf\\303\\251"`); returns it and the text after it."""
    out = bytearray()
    index = 1
    while index < len(text) and text[index] != '"':
        char = text[index]
        if char != "\\" or index + 1 >= len(text):
            out += char.encode("utf-8", errors="surrogateescape")
            index += 1
        elif octal := _OCTAL.match(text, index + 1):
            out.append(int(octal.group(), 8) & 0xFF)
            index = octal.end()
        else:
            out.append(_ESCAPES.get(text[index + 1], ord(text[index + 1]) & 0xFF))
            index += 2
    if index >= len(text):
        raise DiffError(f"unterminated quoted name: {text!r}")
    return out.decode("utf-8", errors="surrogateescape"), text[index + 1 :]


def changed_paths(before: str, after: str) -> list[str]:
    """The files whose change from the base differs between two diffs of the same base: what a step
    between them (a command the agent ran) changed."""
    old = {change.path: change for change in parse_diff(before)} if before.strip() else {}
    new = {change.path: change for change in parse_diff(after)} if after.strip() else {}
    return sorted(path for path in old.keys() | new.keys() if old.get(path) != new.get(path))
