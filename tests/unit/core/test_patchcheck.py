"""check_patch_paths: patches that would write outside the repository, into .git or through a symlink."""

import pytest

from service_feature.patchcheck import check_patch_paths

SAFE = """diff --git a/src/app.py b/src/app.py
index 1111111..2222222 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,2 +1,2 @@
-old
+new
 same
diff --git a/docs/new file.md b/docs/new file.md
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/docs/new file.md
@@ -0,0 +1 @@
+hello
"""


def _new_file(path: str, mode: str = "100644", body: str = "+x") -> str:
    return (
        f"diff --git a/{path} b/{path}\nnew file mode {mode}\nindex 0000000..1111111\n"
        f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n{body}\n"
    )


def test_an_ordinary_patch_has_no_problems() -> None:
    assert check_patch_paths(SAFE) == []
    assert check_patch_paths("") == []


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../outside.txt", "leaves the repository"),
        ("src/../../etc/passwd", "leaves the repository"),
        (".git/hooks/pre-commit", "inside .git"),
        ("sub/.git/config", "inside .git"),
        (".GIT/config", "inside .git"),
    ],
)
def test_paths_that_leave_the_repository_or_enter_git_are_refused(path: str, problem: str) -> None:
    problems = check_patch_paths(_new_file(path))
    assert problems, path
    assert problem in problems[0]


def test_absolute_paths_in_a_plain_unified_diff_are_refused() -> None:
    diff = "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-root\n+evil\n"
    assert any("absolute path" in p for p in check_patch_paths(diff))


def test_a_new_symlink_is_refused() -> None:
    problems = check_patch_paths(
        _new_file("link", mode="120000", body="+/etc/passwd\n\\ No newline at end of file")
    )
    assert problems == ["link: creates or changes a symbolic link"]


def test_a_file_turned_into_a_symlink_is_refused() -> None:
    diff = (
        "diff --git a/conf b/conf\nold mode 100644\nnew mode 120000\nindex 1..2\n"
        "--- a/conf\n+++ b/conf\n@@ -1 +1 @@\n-x\n+/etc\n"
    )
    assert check_patch_paths(diff) == ["conf: creates or changes a symbolic link"]


def test_writing_below_a_symlink_the_patch_creates_is_refused() -> None:
    diff = _new_file("d", mode="120000", body="+/etc") + _new_file("d/passwd")
    assert "d/passwd: writes through the symbolic link d" in check_patch_paths(diff)


def test_writing_below_a_symlink_of_the_base_tree_is_refused_unless_the_patch_removes_it() -> None:
    write = _new_file("vendor/lib/x.py")
    assert check_patch_paths(write, base_symlinks=["vendor"]) == [
        "vendor/lib/x.py: writes through the symbolic link vendor"
    ]
    remove = (
        "diff --git a/vendor b/vendor\ndeleted file mode 120000\nindex 1..0\n"
        "--- a/vendor\n+++ /dev/null\n@@ -1 +0,0 @@\n-/tmp\n"
    )
    assert check_patch_paths(remove + write, base_symlinks=["vendor"]) == []


def test_renaming_a_symlink_is_refused_and_renames_out_of_the_repository_too() -> None:
    rename = "diff --git a/old b/new\nsimilarity index 100%\nrename from old\nrename to new\n"
    assert check_patch_paths(rename, base_symlinks=["old"]) == ["new: creates or changes a symbolic link"]
    escape = "diff --git a/a b/../a\nsimilarity index 100%\nrename from a\nrename to ../a\n"
    assert any("leaves the repository" in p for p in check_patch_paths(escape))


def test_quoted_names_are_decoded() -> None:
    diff = (
        'diff --git "a/\\056git/config" "b/\\056git/config"\nindex 1..2 100644\n'
        '--- "a/\\056git/config"\n+++ "b/\\056git/config"\n@@ -1 +1 @@\n-a\n+b\n'
    )
    assert check_patch_paths(diff) == [".git/config: path inside .git"]


def test_hunk_content_that_looks_like_a_header_is_not_a_header() -> None:
    diff = (
        "diff --git a/notes.md b/notes.md\nindex 1..2 100644\n--- a/notes.md\n+++ b/notes.md\n"
        "@@ -1,2 +1,2 @@\n--- a/../x\n+++ b/../x\n"
    )
    assert check_patch_paths(diff) == []


def test_a_hunk_shorter_than_it_claims_does_not_hide_the_next_file() -> None:
    diff = (
        "diff --git a/a.txt b/a.txt\nindex 1..2 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -1,50 +1,50 @@\n-a\n+b\n"
        + _new_file(".git/hooks/post-checkout")
    )
    assert check_patch_paths(diff) == [".git/hooks/post-checkout: path inside .git"]


def test_binary_sections_are_skipped() -> None:
    diff = (
        "diff --git a/img.png b/img.png\nnew file mode 100644\nindex 0..1\nGIT binary patch\n"
        "literal 3\nKcmZ?wbN~PV00030\n\nliteral 0\nHcmV?d00001\n\n" + _new_file("../evil")
    )
    assert check_patch_paths(diff) == ["../evil: path leaves the repository ('..')"]


def test_names_with_b_slash_are_read_from_the_rename_and_side_lines_not_split_on_the_header() -> None:
    # `diff --git a/p b/q b/r` splits two ways; the lines below it say which, as git apply reads them
    rename = "diff --git a/p b/q b/../r\nsimilarity index 100%\nrename from p b/q\nrename to ../r\n"
    assert check_patch_paths(rename) == ["../r: path leaves the repository ('..')"]
    modify = (
        "diff --git a/x b/.git/y b/x b/.git/y\nindex 1..2 100644\n--- a/x b/.git/y\t\n+++ b/x b/.git/y\t\n"
        "@@ -1 +1 @@\n-a\n+b\n"
    )
    assert check_patch_paths(modify) == ["x b/.git/y: path inside .git"]


def test_a_patch_whose_names_disagree_is_refused() -> None:
    diff = "diff --git a/x b/x\nindex 1..2 100644\n--- a/x\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n"
    (problem,) = check_patch_paths(diff)
    assert problem.startswith("the patch cannot be read: inconsistent names")
