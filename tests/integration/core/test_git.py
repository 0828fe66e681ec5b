"""The git adapter against real repositories."""

import subprocess
from pathlib import Path

import pytest

from service_feature.git import Author, Git, GitError, RepositoryRefused


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "workspaces", timeout=60, allow_local=True)


async def test_a_second_checkout_reuses_the_mirror(git: Git, origin: Path, tmp_path: Path) -> None:
    mirror = await git.mirror(str(origin))
    marker = mirror / "service-feature-marker"
    marker.write_text("kept")
    again = await git.mirror(str(origin))
    assert again == mirror
    assert marker.read_text() == "kept"  # fetched into, not cloned again
    base = await git.resolve_branch(mirror, "main")
    first = await git.worktree(mirror, tmp_path / "wt" / "one", base)
    second = await git.worktree(mirror, tmp_path / "wt" / "two", base)
    assert (first / "src/demo_app/calculator.py").exists()
    assert (second / "src/demo_app/calculator.py").exists()


async def test_new_commits_on_the_origin_are_fetched(git: Git, origin: Path, tmp_path: Path) -> None:
    mirror = await git.mirror(str(origin))
    before = await git.resolve_branch(mirror, "main")
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True)
    (work / "NEW").write_text("x")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "-C", str(work), "add", "NEW"], check=True)
    subprocess.run(
        ["git", "-C", str(work), "commit", "-qm", "new"], check=True, env={**env, "PATH": "/usr/bin:/bin"}
    )
    subprocess.run(["git", "-C", str(work), "push", "-q"], check=True)
    await git.mirror(str(origin))
    assert await git.resolve_branch(mirror, "main") != before


async def test_diff_apply_commit_push_round_trip_is_deterministic(
    git: Git, origin: Path, tmp_path: Path
) -> None:
    mirror = await git.mirror(str(origin))
    base = await git.resolve_branch(mirror, "main")
    tree = await git.worktree(mirror, tmp_path / "wt" / "a", base)
    (tree / "hello.txt").write_text("hello\n")
    (tree / "README.md").unlink()
    diff = await git.diff(tree, base)
    assert "+++ b/hello.txt" in diff
    assert "deleted file mode" in diff
    assert "+++ /dev/null" in diff  # README.md, deleted

    author = Author("Bot", "bot@example.com")
    commits = []
    for name in ("b", "c"):
        copy = await git.worktree(mirror, tmp_path / "wt" / name, base)
        await git.apply(copy, diff)
        commits.append(await git.commit(copy, "Add hello\n", author, "2026-01-01T00:00:00+00:00"))
    assert commits[0] == commits[1]
    await git.push(copy, str(origin), commits[0], "feature/x")
    await git.push(copy, str(origin), commits[0], "feature/x")  # a redone delivery is a no-op
    pushed = subprocess.run(
        ["git", "--git-dir", str(origin), "rev-parse", "feature/x"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert pushed.stdout.strip() == commits[0]


async def test_errors_are_clear(git: Git, origin: Path, tmp_path: Path) -> None:
    mirror = await git.mirror(str(origin))
    with pytest.raises(
        GitError, match=r"branch 'nope' does not exist in the repository; set `branch` to one it has: main$"
    ):
        await git.resolve_branch(mirror, "nope")
    missing = tmp_path / "missing.git"
    with pytest.raises(
        GitError,
        match=f"^git clone of {missing} failed: {missing} does not exist on this host; check repository_url",
    ):
        await git.mirror(str(missing))
    with pytest.raises(RepositoryRefused):
        await Git(tmp_path / "w2", allow_local=False).mirror(str(origin))


async def test_repository_hooks_never_run(git: Git, origin: Path, tmp_path: Path) -> None:
    mirror = await git.mirror(str(origin))
    base = await git.resolve_branch(mirror, "main")
    tree = await git.worktree(mirror, tmp_path / "wt" / "hooks", base)
    canary = tmp_path / "hook-ran"
    hook = mirror / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {canary}\n")
    hook.chmod(0o755)
    (tree / "f.txt").write_text("x")
    await git.commit(tree, "msg\n", Author("a", "a@a"), "2026-01-01T00:00:00+00:00")
    assert not canary.exists()


async def test_a_commit_names_its_committer_and_is_signed_with_the_ssh_key(
    git: Git, origin: Path, tmp_path: Path
) -> None:
    key = tmp_path / "signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    mirror = await git.mirror(str(origin))
    base = await git.resolve_branch(mirror, "main")
    commits = []
    for name in ("s1", "s2"):
        tree = await git.worktree(mirror, tmp_path / "wt" / name, base)
        (tree / "signed.txt").write_text("signed\n")
        commits.append(
            await git.commit(
                tree,
                "Signed\n",
                Author("Bot", "bot@example.com"),
                "2026-01-01T00:00:00+00:00",
                committer=Author("Platform", "platform@example.com"),
                signing_key=key,
            )
        )
    assert commits[0] == commits[1]  # an Ed25519 SSH signature is deterministic: a redone delivery matches
    show = ["git", "-C", str(tree), "log", "-1", "--format=%an <%ae>|%cn <%ce>", commits[0]]
    assert subprocess.run(show, capture_output=True, text=True, check=True).stdout.strip() == (
        "Bot <bot@example.com>|Platform <platform@example.com>"
    )
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"platform@example.com {(tmp_path / 'signing.pub').read_text()}")
    verify = subprocess.run(
        ["git", "-C", str(tree), "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", commits[0]],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    assert 'Good "git" signature for platform@example.com' in verify.stderr
