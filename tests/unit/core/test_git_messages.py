"""git's errors, reworded for a feature's failure reason: its meaningful lines, and a local path's problem."""

from pathlib import Path

import pytest

from service_feature.git import GitError, local_repository_problem, stderr_summary

MISSING_REPOSITORY = """Cloning into bare repository '/w/mirrors/abc.partial'...
fatal: '/srv/repo' does not appear to be a git repository
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""


def test_the_meaningful_lines_are_kept_not_the_last_one() -> None:
    assert stderr_summary(MISSING_REPOSITORY) == (
        "'/srv/repo' does not appear to be a git repository; Could not read from remote repository."
    )


def test_repeats_hints_and_blank_output_are_dropped() -> None:
    stderr = "error: pathspec 'x' did not match\nhint: try this\nerror: pathspec 'x' did not match\n"
    assert stderr_summary(stderr) == "pathspec 'x' did not match"
    assert stderr_summary("\n  \n") == ""


def test_a_missing_path_and_a_plain_directory_are_told_apart(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    bare = tmp_path / "bare.git"
    (bare / "objects").mkdir(parents=True)
    (bare / "HEAD").write_text("ref: refs/heads/main\n")
    working_copy = tmp_path / "work"
    (working_copy / ".git").mkdir(parents=True)

    assert (
        local_repository_problem(f"file://{tmp_path}/gone") == f"{tmp_path}/gone does not exist on this host"
    )
    assert local_repository_problem(str(plain)) == f"{plain} exists but is not a git repository"
    assert local_repository_problem(f"file://{bare}") is None
    assert local_repository_problem(str(working_copy)) is None
    assert local_repository_problem("https://example.com/missing.git") is None
    assert local_repository_problem("git@example.com:team/repo.git") is None


@pytest.mark.parametrize(
    ("detail", "transient"),
    [
        ("fatal: unable to access 'https://h/r.git/': Could not resolve host: h", True),
        ("fatal: unable to access 'https://h/r.git/': Failed to connect to h port 443", True),
        ("error: RPC failed; curl 56 Recv failure: Connection reset by peer", True),
        ("fatal: the remote end hung up unexpectedly", True),
        ("fatal: unable to access 'https://h/r.git/': The requested URL returned error: 503", True),
        ("fatal: unable to access 'https://h/r.git/': The requested URL returned error: 403", False),
        ("fatal: repository 'https://h/r.git/' not found", False),
        ("fatal: Authentication failed for 'https://h/r.git/'", False),
    ],
)
def test_network_failures_are_worth_a_retry_and_refusals_are_not(detail: str, transient: bool) -> None:
    assert GitError(f"git fetch failed: {detail}", detail).transient is transient


def test_a_timeout_is_worth_a_retry_whatever_it_says() -> None:
    assert GitError("git clone timed out after 300 s", "timed out after 300 s", transient=True).transient
