"""Refuse a patch that would write outside the repository, into `.git/`, or through a symbolic link.

The patch comes from the model, so it is untrusted: before it is applied for delivery the worker asks
`check_patch_paths(diff, base_symlinks=...)` for problems and refuses the patch when there are any.
`git apply` refuses some of these on its own; this check does not rely on it, names every problem, and
also covers what git would accept (a new symlink, which the sandbox or a later reader could follow).

Pure, no I/O. The paths come from `service_feature.diffs`, the parser the reviewer reads the same patch
with, so the two cannot disagree on which files a patch touches. It is asked not to stop at a hunk shorter
than its header says, so a truncated hunk never hides a file header after it; a patch whose names are
ambiguous or inconsistent (which `git apply` refuses too) is itself a problem.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import PurePosixPath

from service_feature.diffs import DiffError, FileChange, FileStatus, parse_diff


def check_patch_paths(diff: str, *, base_symlinks: Collection[str] = ()) -> list[str]:
    """Problems with the paths `diff` touches; empty when it is safe to apply.

    `base_symlinks`: paths that are symlinks in the tree the patch applies to (the worker can list them
    with `git ls-tree -r`), so a write below one of them is refused too."""
    try:
        changes = parse_diff(diff, strict=False)
    except DiffError as error:
        return [f"the patch cannot be read: {error}"]
    links, problems = _symlinks_after(changes, base_symlinks)
    for change in changes:
        for path in dict.fromkeys(p for p in (change.old_path, change.new_path) if p is not None):
            problems.extend(f"{path}: {reason}" for reason in _path_problems(path))
        if change.new_path is not None:
            parents = PurePosixPath(_normal(change.new_path)).parents
            through = next((str(p) for p in parents if str(p) in links), None)
            if through is not None:
                problems.append(f"{change.new_path}: writes through the symbolic link {through}")
    return list(dict.fromkeys(problems))


def _symlinks_after(changes: list[FileChange], base_symlinks: Collection[str]) -> tuple[set[str], list[str]]:
    """The symlinks of the patched tree, and a problem for each one the patch creates or changes."""
    links = {_normal(p) for p in base_symlinks}
    problems: list[str] = []
    for change in changes:
        old = _normal(change.old_path) if change.old_path is not None else None
        # a rename or copy of a base symlink carries its mode without saying so
        carried = change.status in (FileStatus.renamed, FileStatus.copied) and old in links
        if old is not None and change.status in (FileStatus.deleted, FileStatus.renamed):
            links.discard(old)
        if change.new_path is not None and (change.leaves_symlink or carried):
            problems.append(f"{change.new_path}: creates or changes a symbolic link")
            links.add(_normal(change.new_path))
    return links, problems


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
