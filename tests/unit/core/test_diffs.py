"""The one diff parser against real `git diff` output: hostile names (spaces, ` b/` inside names, quotes,
backslashes, tabs, newlines, non-UTF-8 bytes, unicode), renames, copies, mode and type changes, binary
files, and hunk lines that look like headers. git's own `--raw -z` and `--numstat -z` listings are the
oracle: they name each path as bytes, so no parsing of ours is involved in the expected side."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service_feature.diffs import DiffError, DiffLine, FileChange, FileStatus, changed_paths, parse_diff
from service_feature.patchcheck import check_patch_paths

_GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,  # the user's config (diff.noprefix, core.quotePath) must not shape it
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}
# The flags `Git.diff` produces the delivered patch with.
SERVICE_FLAGS = ["diff", "--cached", "--binary", "--no-color", "--no-ext-diff"]

# Pieces of names chosen to break a parser: ` b/` (with the `/` between components), quotes, escapes,
# whitespace git quotes, bytes that are not UTF-8, unicode, and text of diff headers.
_ATOMS = [
    b"a",
    b"b",
    b" ",
    b" b",
    b"a b",
    b"b ",
    b'"',
    b"\\",
    b"\t",
    b"\n",
    b"\xff",
    b"\xe9",
    "é".encode(),
    "日本".encode(),
    b"x.py",
    b"--- a",
    b"+++ b",
    b"@@",
    b"-",
]
_CONTENT_LINES = [
    "plain",
    "--- a/x",
    "+++ b/x",
    "diff --git a/x b/x",
    "@@ -1 +1 @@",
    "\\ No newline",
    "-- sql",
]

component = st.lists(st.sampled_from(_ATOMS), min_size=1, max_size=4).map(b"".join)
path = st.lists(component, min_size=1, max_size=3).map(b"/".join)
BASE_OPS = ["keep", "modify", "delete", "rename", "chmod", "modify_chmod", "to_symlink", "copy"]
NEW_OPS = ["add", "add_binary", "add_symlink", "add_executable"]


@dataclass(frozen=True)
class Entry:
    old: str | None
    new: str | None
    status: FileStatus
    old_mode: str | None
    new_mode: str | None


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, env=_GIT_ENV, check=True, capture_output=True).stdout


def _content(seed: int, lines: list[int], binary: bool) -> bytes:
    if binary:
        return b"\0binary\0" + seed.to_bytes(4, "big") * 8
    body = [f"file {seed} line {n}" for n in range(6)] + [_CONTENT_LINES[i] for i in lines]
    return ("\n".join(body) + "\n").encode()


def _write(root: bytes, name: bytes, data: bytes, *, executable: bool = False) -> None:
    target = os.path.join(root, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as out:
        out.write(data)
    os.chmod(target, 0o755 if executable else 0o644)


def _symlink(root: bytes, name: bytes) -> None:
    target = os.path.join(root, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.symlink(b"../elsewhere", target)


def _clash(paths: list[bytes]) -> bool:
    """Two names the same, or one a folder of another (a file and a folder cannot share a name)."""
    if len(set(paths)) != len(paths):
        return True
    folders = {p[:i] for p in paths for i in range(len(p)) if p[i : i + 1] == b"/"}
    return any(p in folders for p in paths)


def _raw_entries(raw: bytes, numstat: bytes) -> tuple[list[Entry], Counter[str]]:
    """git's own account of the change: entries as the patch shows them, and lines added/removed per path
    (numstat calls a binary file binary even when only its name or mode changed, and the patch then has
    no binary section: such paths are left out)."""
    fields = raw.split(b"\0")
    entries: list[Entry] = []
    unchanged_content: set[str] = set()
    index = 0
    while index < len(fields) - 1:
        old_mode, new_mode, old_blob, new_blob, status = fields[index][1:].decode().split(" ")
        first = os.fsdecode(fields[index + 1])
        if status[0] in "RC":
            second = os.fsdecode(fields[index + 2])
            if old_blob == new_blob:
                unchanged_content.add(second)
            index += 3
            same = status.endswith("100") and old_mode == new_mode  # the patch states no mode then
            kind = FileStatus.renamed if status[0] == "R" else FileStatus.copied
            modes = (None, None) if same else (old_mode, new_mode)
            entries.append(Entry(first, second, kind, *modes))
            continue
        index += 2
        if old_blob == new_blob:
            unchanged_content.add(first)
        if status == "A":
            entries.append(Entry(None, first, FileStatus.added, None, new_mode))
        elif status == "D":
            entries.append(Entry(first, None, FileStatus.deleted, old_mode, None))
        elif status == "T":  # the patch writes a type change as a deletion and an addition
            entries.append(Entry(first, None, FileStatus.deleted, old_mode, None))
            entries.append(Entry(None, first, FileStatus.added, None, new_mode))
        else:
            entries.append(Entry(first, first, FileStatus.modified, old_mode, new_mode))
    counts = _numstat_counts(numstat)
    for path in unchanged_content:
        counts.pop(f"{path} binary", None)
    return entries, counts


def _numstat_counts(numstat: bytes) -> Counter[str]:
    counts: Counter[str] = Counter()
    fields = numstat.split(b"\0")
    index = 0
    while index < len(fields) - 1:
        added, removed, name = fields[index].split(b"\t", 2)
        if name:
            index += 1
        else:  # a rename or copy: both names follow
            name = fields[index + 2]
            index += 3
        key = os.fsdecode(name)
        if added == b"-":
            counts[f"{key} binary"] += 1
        else:
            counts[f"{key} +"] += int(added)
            counts[f"{key} -"] += int(removed)
    return counts


def _parsed_counts(changes: list[FileChange]) -> Counter[str]:
    """Lines added and removed per path, or "binary" (as numstat: a type change is one path there)."""
    binary = {c.path for c in changes if c.is_binary}
    counts: Counter[str] = Counter(f"{path} binary" for path in binary)
    for change in changes:
        if change.path not in binary:
            counts[f"{change.path} +"] += len(change.added)
            counts[f"{change.path} -"] += len(change.removed)
    return counts


def _as_entries(changes: list[FileChange]) -> list[Entry]:
    return [Entry(c.old_path, c.new_path, c.status, c.old_mode, c.new_mode) for c in changes]


plans = st.tuples(
    st.lists(
        st.tuples(path, st.sampled_from(BASE_OPS), path, st.lists(st.integers(0, 6), max_size=3)),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.tuples(path, st.sampled_from(NEW_OPS), st.lists(st.integers(0, 6), max_size=3)), max_size=3),
    st.booleans(),  # core.quotePath=false: names other than control characters, quotes, backslashes raw
    st.booleans(),  # copy detection as well (`-C --find-copies-harder`)
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans)
def test_the_parser_recovers_every_path_status_and_mode_of_real_git_diffs(
    plan: tuple[list[tuple[bytes, str, bytes, list[int]]], list[tuple[bytes, str, list[int]]], bool, bool],
) -> None:
    base_files, new_files, raw_names, copies = plan
    names = [p for p, *_ in base_files] + [t for _, op, t, _ in base_files if op in ("rename", "copy")]
    names += [p for p, *_ in new_files]
    assume(not _clash(names))  # else not a tree a file system can hold
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        root = os.fsencode(tmp)
        touched = _make_change(repo, root, base_files, new_files, copies)
        options = ["-c", "core.quotePath=false"] if raw_names else []
        detection = ["-M", *(["-C", "--find-copies-harder"] if copies else [])]
        diff = _git(repo, *options, *SERVICE_FLAGS, *detection).decode("utf-8", errors="surrogateescape")
        # `--binary` implies the patch, so git's listings are asked for without it
        raw = _git(repo, *options, "diff", "--cached", *detection, "--raw", "-z")
        numstat = _git(repo, *options, "diff", "--cached", *detection, "--numstat", "-z")

    changes = parse_diff(diff)

    expected, counts = _raw_entries(raw, numstat)
    assert sorted(_as_entries(changes), key=repr) == sorted(expected, key=repr)
    assert _parsed_counts(changes) == counts
    assert {p for c in changes for p in (c.old_path, c.new_path) if p} == touched
    if not raw_names:
        # quoted names are ASCII, so the lossy decoding of `Git.run` cannot change them
        lossy = parse_diff(diff.encode("utf-8", errors="surrogateescape").decode(errors="replace"))
        assert [(c.old_path, c.new_path) for c in lossy] == [(c.old_path, c.new_path) for c in changes]
    # the patch checks read the same names: a new symlink is all they find in these hostile trees
    links = dict.fromkeys(c.path for c in changes if c.leaves_symlink)
    assert check_patch_paths(diff) == [f"{link}: creates or changes a symbolic link" for link in links]


def _make_change(
    repo: Path,
    root: bytes,
    base_files: list[tuple[bytes, str, bytes, list[int]]],
    new_files: list[tuple[bytes, str, list[int]]],
    copies: bool,
) -> set[str]:
    """Commit the base files, then change the work tree as planned and stage it; the paths it touched."""
    _git(repo, "init", "-q")
    for seed, (name, _, _, lines) in enumerate(base_files):
        _write(root, name, _content(seed, lines, binary=seed % 4 == 3))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    touched: set[str] = set()
    for seed, (name, op, target, lines) in enumerate(base_files):
        if op == "keep":
            continue
        touched.add(os.fsdecode(name))
        if op in ("modify", "modify_chmod"):
            _write(root, name, _content(seed + 100, lines, binary=False), executable=op == "modify_chmod")
        elif op == "chmod":
            os.chmod(os.path.join(root, name), 0o755)
        elif op == "delete":
            os.remove(os.path.join(root, name))
        elif op == "to_symlink":
            os.remove(os.path.join(root, name))
            _symlink(root, name)
        elif op == "rename":
            _write(root, target, _content(seed, lines, binary=seed % 4 == 3))
            os.remove(os.path.join(root, name))
            touched.add(os.fsdecode(target))
        elif op == "copy":
            if not copies:
                touched.discard(os.fsdecode(name))  # the source stays as it was, named only as a copy's
            _write(root, target, _content(seed, lines, binary=seed % 4 == 3))
            touched.add(os.fsdecode(target))
    for seed, (name, op, lines) in enumerate(new_files, start=1000):
        if op == "add_symlink":
            _symlink(root, name)
        else:
            _write(root, name, _content(seed, lines, op == "add_binary"), executable=op == "add_executable")
        touched.add(os.fsdecode(name))
    _git(repo, "add", "-A")
    return touched


# -- the header cases the two former parsers disagreed on ----------------------------------------------


def test_an_ambiguous_git_header_is_resolved_by_the_side_lines() -> None:
    for old, new in (("p", "q b/r"), ("p b/q", "r")):
        diff = (
            f"diff --git a/p b/q b/r\nindex 1..2 100644\n--- a/{old}\t\n+++ b/{new}\t\n@@ -1 +1 @@\n-x\n+y\n"
        )
        (change,) = parse_diff(diff)
        assert (change.old_path, change.new_path) == (old, new)


def test_an_ambiguous_git_header_is_resolved_by_the_rename_lines() -> None:
    diff = "diff --git a/p b/q b/r\nsimilarity index 100%\nrename from p b/q\nrename to r\n"
    (change,) = parse_diff(diff)
    assert (change.old_path, change.new_path, change.status) == ("p b/q", "r", FileStatus.renamed)
    assert check_patch_paths(diff) == []


def test_a_header_nothing_resolves_is_an_error_and_a_patch_problem() -> None:
    diff = "diff --git a/p b/q b/r\nold mode 100644\nnew mode 100755\n"
    with pytest.raises(DiffError, match="unambiguously"):
        parse_diff(diff)
    assert check_patch_paths(diff)[0].startswith("the patch cannot be read: ")


@pytest.mark.parametrize(
    "diff",
    [
        # the `+++` line names another file than the header: git apply refuses it, so do we
        "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/.git/hooks/pre-commit\n@@ -1 +1 @@\n-a\n+b\n",
        # the rename lines and the side lines disagree
        "diff --git a/p b/q\nrename from p\nrename to q\n--- a/p\n+++ b/../q\n@@ -1 +1 @@\n-a\n+b\n",
        # a rename without its `rename to` line
        "diff --git a/p b/q\nsimilarity index 90%\nrename from p\n",
    ],
)
def test_inconsistent_names_are_errors(diff: str) -> None:
    with pytest.raises(DiffError):
        parse_diff(diff)
    assert check_patch_paths(diff)


def test_modes_binary_copies_and_quoted_names_of_hand_written_diffs() -> None:
    diff = (
        'diff --git "a/caf\\303\\251 \\"q\\"" "b/caf\\303\\251 \\"q\\""\n'
        "old mode 100644\nnew mode 100755\n"
        "diff --git a/src b/dst b/x\nsimilarity index 100%\ncopy from src\ncopy to dst b/x\n"
        "diff --git a/img b/img\nindex 1..2 100644\nBinary files a/img and b/img differ\n"
        'diff --git "a/\\377raw" "b/\\377raw"\nnew file mode 120000\nindex 0..1\n'
        '--- /dev/null\n+++ "b/\\377raw"\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n'
    )
    quoted, copied, binary, link = parse_diff(diff)
    assert (quoted.path, quoted.old_mode, quoted.new_mode) == ('café "q"', "100644", "100755")
    assert (copied.old_path, copied.new_path, copied.status) == ("src", "dst b/x", FileStatus.copied)
    assert binary.is_binary
    assert binary.old_mode == binary.new_mode == "100644"
    assert (link.path, link.status, link.leaves_symlink) == (os.fsdecode(b"\xffraw"), FileStatus.added, True)
    assert link.added == [DiffLine(1, "/etc")]


def test_line_breaks_other_than_newline_stay_inside_a_line() -> None:
    # str.splitlines would cut "\u2028" and "\x0b"; git (and so `git apply`) cuts at "\n" only
    diff = "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\u2028diff --git a/.git b/.git\n+b\x0bc\n"
    (change,) = parse_diff(diff)
    assert change.added == [DiffLine(1, "b\x0bc")]
    assert check_patch_paths(diff) == []


def test_a_binary_patch_ends_at_the_first_line_that_is_not_base85() -> None:
    diff = (
        "diff --git a/img b/img\nnew file mode 100644\nindex 0..1\nGIT binary patch\nliteral 3\n"
        "KcmZ?wbN~PV00030\n\n--- a/ok\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n"
    )
    assert check_patch_paths(diff) == ["../../etc/passwd: path leaves the repository ('..')"]


def test_changed_paths_are_the_files_whose_change_differs() -> None:
    one = (
        "diff --git a/a.txt b/a.txt\nnew file mode 100644\n--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+one\n"
    )
    two = (
        "diff --git a/a.txt b/a.txt\nnew file mode 100644\n--- /dev/null\n+++ b/a.txt\n@@ -0,0 +1 @@\n+two\n"
    )
    other = (
        "diff --git a/b.txt b/b.txt\nnew file mode 100644\n--- /dev/null\n+++ b/b.txt\n@@ -0,0 +1 @@\n+b\n"
    )
    assert changed_paths(one, one) == []
    assert changed_paths(one, two) == ["a.txt"]
    assert changed_paths(one, one + other) == ["b.txt"]
    assert changed_paths(one + other, "") == ["a.txt", "b.txt"]
    assert changed_paths("", "") == []
