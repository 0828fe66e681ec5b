"""Refuse a patch that would write outside the repository, into `.git/`, or through a symbolic link.

The patch comes from the model, so it is untrusted: before it is applied for delivery the worker asks
`check_patch_paths(diff, base_symlinks=...)` for problems and refuses the patch when there are any.
`git apply` refuses some of these on its own; this check does not rely on it, names every problem, and
also covers what git would accept (a new symlink, which the sandbox or a later reader could follow).

Pure, no I/O. Written by hand rather than with a diff library: the rules hinge on git's extended headers
(modes, renames, copies, C-quoted names, binary sections) that general unified-diff parsers skip.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

SYMLINK_MODE = "120000"
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass
class _Entry:
    """One file of the patch: the paths it reads and writes, and whether it leaves a symlink behind."""

    header: str
    old: str | None = None
    new: str | None = None
    sources: list[str] = field(default_factory=list)  # rename/copy from
    renamed: bool = False
    symlink: bool = False
    deleted: bool = False


def check_patch_paths(diff: str, *, base_symlinks: Collection[str] = ()) -> list[str]:
    """Problems with the paths `diff` touches; empty when it is safe to apply.

    `base_symlinks`: paths that are symlinks in the tree the patch applies to (the worker can list them
    with `git ls-tree -r`), so a write below one of them is refused too."""
    entries = list(_entries(diff))
    problems: list[str] = []
    links = {_normal(p) for p in base_symlinks}
    for entry in entries:
        if entry.deleted and entry.old:
            links.discard(_normal(entry.old))
        for source in entry.sources:
            if _normal(source) in links and entry.new:
                entry.symlink = True
            if entry.renamed:
                links.discard(_normal(source))
        if entry.symlink and entry.new and not entry.deleted:
            problems.append(f"{entry.new}: creates or changes a symbolic link")
            links.add(_normal(entry.new))
    for entry in entries:
        for path in dict.fromkeys(p for p in (entry.old, entry.new, *entry.sources) if p is not None):
            problems.extend(f"{path}: {reason}" for reason in _path_problems(path))
        if entry.new and not entry.deleted:
            parents = PurePosixPath(_normal(entry.new)).parents
            through = next((str(p) for p in parents if str(p) in links), None)
            if through is not None:
                problems.append(f"{entry.new}: writes through the symbolic link {through}")
    return list(dict.fromkeys(problems))


def _path_problems(path: str) -> Iterator[str]:
    if not path:
        yield "empty path"
        return
    if "\0" in path:
        yield "path contains a NUL byte"
    if path.startswith("/"):
        yield "absolute path"
    parts = path.split("/")
    if ".." in parts:
        yield "path leaves the repository ('..')"
    if any(part.lower().rstrip(". ") == ".git" for part in parts):
        yield "path inside .git"


def _normal(path: str) -> str:
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def _entries(diff: str) -> Iterator[_Entry]:
    entry: _Entry | None = None
    old_left = new_left = 0  # lines left in the current hunk
    binary = False
    for line in diff.splitlines():
        marker = line[:1]
        if (old_left > 0 or new_left > 0) and marker in (" ", "", "-", "+", "\\"):
            # a line of a hunk; anything else ends it early (a truncated hunk must not hide a header)
            if marker in (" ", ""):
                old_left, new_left = old_left - 1, new_left - 1
            elif marker == "-":
                old_left -= 1
            elif marker == "+":
                new_left -= 1
            continue
        old_left = new_left = 0
        if line.startswith("diff --git "):
            if entry is not None:
                yield entry
            entry = _Entry(line)
            entry.old, entry.new = _git_header_paths(line[len("diff --git ") :])
            binary = False
            continue
        if binary:
            continue
        if line.startswith("--- ") and (entry is None or entry.header.startswith("---")):
            # a plain unified diff without git headers: each file starts at its `---` line
            if entry is not None:
                yield entry
            entry = _Entry(line, old=_side(line[4:]))
            continue
        if entry is None:
            continue
        if line.startswith("--- "):
            entry.old = _side(line[4:])
        elif line.startswith("+++ "):
            entry.new = _side(line[4:])
            entry.deleted = entry.new is None
        elif line.startswith(("rename from ", "copy from ")):
            entry.sources.append(_unquote(line.split(" ", 2)[2]))
            entry.renamed = line.startswith("rename")
        elif line.startswith(("rename to ", "copy to ")):
            entry.new = _unquote(line.split(" ", 2)[2])
        elif line.startswith("deleted file mode "):
            entry.deleted = True
        elif line.startswith(("new file mode ", "new mode ")):
            entry.symlink = line.rsplit(" ", 1)[1] == SYMLINK_MODE
        elif line.startswith("index ") and line.count(" ") == 2:
            entry.symlink = entry.symlink or line.rsplit(" ", 1)[1] == SYMLINK_MODE
        elif line.startswith("GIT binary patch"):
            binary = True
        elif match := _HUNK.match(line):
            old_left = int(match.group(1) if match.group(1) is not None else 1)
            new_left = int(match.group(2) if match.group(2) is not None else 1)
    if entry is not None:
        yield entry


def _git_header_paths(rest: str) -> tuple[str | None, str | None]:
    """`a/X b/Y` of a `diff --git` line; names with spaces are split where both halves agree."""
    if rest.startswith('"'):
        old, remainder = _take_quoted(rest)
        new = _unquote(remainder.strip())
        return _strip_prefix(old), _strip_prefix(new)
    if rest.endswith('"'):
        start = rest.index(' "')
        return _strip_prefix(rest[:start]), _strip_prefix(_unquote(rest[start + 1 :]))
    half = (len(rest) - 1) // 2
    if len(rest) % 2 == 1 and rest[half] == " " and rest[2:half] == rest[half + 3 :]:
        return _strip_prefix(rest[:half]), _strip_prefix(rest[half + 1 :])
    old, _, new = rest.partition(" b/")
    return _strip_prefix(old), new


def _side(text: str) -> str | None:
    text = text.split("\t", 1)[0] if not text.startswith('"') else text
    path = _unquote(text.strip())
    return None if path == "/dev/null" else _strip_prefix(path)


def _strip_prefix(path: str) -> str:
    return path[2:] if path.startswith(("a/", "b/")) else path


def _unquote(text: str) -> str:
    return _take_quoted(text)[0] if text.startswith('"') else text


def _take_quoted(text: str) -> tuple[str, str]:
    """Decode a C-quoted name as git writes it ("a/\\303\\251"); returns it and the rest of the text."""
    out = bytearray()
    index = 1
    while index < len(text) and text[index] != '"':
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            if following in "01234567":
                out.append(int(text[index + 1 : index + 4], 8) & 0xFF)
                index += 4
                continue
            out.append(_ESCAPES.get(following, ord(following)))
            index += 2
            continue
        out.extend(char.encode())
        index += 1
    return out.decode(errors="replace"), text[index + 1 :]
