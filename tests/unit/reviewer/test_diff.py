from __future__ import annotations

import pytest

from service_feature.diffs import DiffError, DiffLine, FileStatus, parse_diff
from tests.support.review_corpus import Files, MakePatch


def test_statuses_and_line_numbers_of_a_git_diff(make_patch: MakePatch) -> None:
    base: Files = {
        "keep.txt": "a\nb\nc\n",
        "gone.txt": "bye\n",
        "old_name.py": "".join(f"line {n}\n" for n in range(10)),
        "logo.png": b"\x89PNG\x00\x01",
    }
    patch: Files = {
        "keep.txt": "a\nB\nc\nd\n",
        "gone.txt": None,
        "old_name.py": None,
        "new_name.py": "".join(f"line {n}\n" for n in range(10)) + "line 10\n",
        "logo.png": b"\x89PNG\x00\x02",
        "fresh.txt": "new\n",
    }
    changes = {change.path: change for change in parse_diff(make_patch(base, patch).diff)}

    assert set(changes) == {"keep.txt", "gone.txt", "new_name.py", "logo.png", "fresh.txt"}
    keep = changes["keep.txt"]
    assert keep.status is FileStatus.modified
    assert keep.added == [DiffLine(2, "B"), DiffLine(4, "d")]
    assert keep.removed == [DiffLine(2, "b")]
    assert changes["gone.txt"].status is FileStatus.deleted
    assert changes["gone.txt"].new_path is None
    assert changes["gone.txt"].removed == [DiffLine(1, "bye")]
    renamed = changes["new_name.py"]
    assert (renamed.status, renamed.old_path) == (FileStatus.renamed, "old_name.py")
    assert renamed.added == [DiffLine(11, "line 10")]
    assert changes["logo.png"].is_binary
    assert changes["logo.png"].added == []
    assert (changes["fresh.txt"].status, changes["fresh.txt"].old_path) == (FileStatus.added, None)


def test_quoted_paths_with_spaces_and_unicode(make_patch: MakePatch) -> None:
    diff = make_patch({"dir with space/café.txt": "x\n"}, {"dir with space/café.txt": "y\n"}).diff

    (change,) = parse_diff(diff)

    assert change.path == "dir with space/café.txt"
    assert change.added == [DiffLine(1, "y")]


def test_hunk_lines_that_look_like_headers_stay_lines() -> None:
    diff = (
        "diff --git a/q.sql b/q.sql\n"
        "--- a/q.sql\n"
        "+++ b/q.sql\n"
        "@@ -1,2 +1,2 @@\n"
        "--- old comment\n"
        "+++ new comment\n"
        " SELECT 1;\n"
        "\\ No newline at end of file\n"
    )

    (change,) = parse_diff(diff)

    assert change.removed == [DiffLine(1, "-- old comment")]
    assert change.added == [DiffLine(1, "++ new comment")]
    assert change.context == [DiffLine(2, "SELECT 1;")]


def test_plain_unified_diff_without_git_headers() -> None:
    diff = (
        "--- a/one.txt\t2024-01-01 00:00:00\n"
        "+++ b/one.txt\t2024-01-02 00:00:00\n"
        "@@ -1 +1 @@\n"
        "-1\n"
        "+one\n"
        "--- /dev/null\n"
        "+++ b/two.txt\n"
        "@@ -0,0 +1 @@\n"
        "+two\n"
    )

    changes = parse_diff(diff)

    assert [(change.path, change.status) for change in changes] == [
        ("one.txt", FileStatus.modified),
        ("two.txt", FileStatus.added),
    ]


def test_mode_only_change_keeps_both_paths() -> None:
    diff = "diff --git a/run me.sh b/run me.sh\nold mode 100644\nnew mode 100755\n"

    (change,) = parse_diff(diff)

    assert (change.old_path, change.new_path, change.status) == (
        "run me.sh",
        "run me.sh",
        FileStatus.modified,
    )


@pytest.mark.parametrize(
    "diff",
    [
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ nonsense @@\n",
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n",
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n?garbage\n",
    ],
)
def test_malformed_hunks_are_errors(diff: str) -> None:
    with pytest.raises(DiffError):
        parse_diff(diff)
