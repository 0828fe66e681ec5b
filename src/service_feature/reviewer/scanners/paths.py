"""Path rules shared by the scanners: glob matching and what counts as a test file.

Globs follow the gitignore habits the repositories' owners already know: `*` stays within a directory, `**`
crosses directories, a pattern without `/` (but for a trailing one) matches a name at any depth, a leading or
inner `/` anchors it at the root, and a trailing `/` means everything under that directory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import PurePosixPath

from service_feature.diffs import FileChange

_TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec"})
_TEST_NAMES = (
    "test_*.py",
    "*_test.py",
    "conftest.py",
    "*_test.go",
    "*.test.*",
    "*.spec.*",
)


def matches(path: str, patterns: Iterable[str]) -> bool:
    """Whether `path` (relative, `/`-separated) matches any of the globs."""
    return any(_compile(pattern).fullmatch(path) for pattern in patterns)


def is_test_path(path: str) -> bool:
    """A test file by its name or by a `tests/`-like directory on its path."""
    parts = PurePosixPath(path).parts
    return bool(_TEST_DIRS.intersection(parts[:-1])) or matches(parts[-1], _TEST_NAMES)


def source_changes(
    changes: Sequence[FileChange], suffixes: tuple[str, ...] | None = None
) -> list[FileChange]:
    """The text files (with one of the suffixes, when given) that the patch adds lines to and keeps."""
    return [
        change
        for change in changes
        if change.exists_after
        and not change.is_binary
        and change.added
        and (suffixes is None or change.path.endswith(suffixes))
    ]


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip()
    body = pattern.strip("/")
    if "/" not in body and not pattern.startswith("/"):
        body = "**/" + body
    if pattern.endswith("/"):
        body += "/**"
    pattern = body
    regex: list[str] = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            regex.append(".*")
            index += 2
        elif pattern[index] == "*":
            regex.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            regex.append("[^/]")
            index += 1
        else:
            regex.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(regex))
