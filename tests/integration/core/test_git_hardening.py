"""The git adapter against hostile or heavy repositories, and push credentials that never touch disk.

An HTTPS git server (tests/support/git_https.py) stands in for a forge: cloning is anonymous, pushing
needs a token."""

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service_feature import git as git_module
from service_feature.git import Author, Git, GitError, PushCredentials, RepositoryRefused
from service_feature.patchcheck import check_patch_paths
from tests.support.git_https import GitServer, git_https_server

TOKEN = "ghp_" + "s3cr3t" * 6
IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **IDENTITY, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def forge(tmp_path: Path, origin: Path) -> Iterator[tuple[str, GitServer, Path]]:
    """(https URL of a copy of `origin`, the server's record, the CA file to trust)."""
    root = tmp_path / "forge"
    root.mkdir()
    shutil.copytree(origin, root / "repo.git")
    with git_https_server(root, username="x-access-token", token=TOKEN) as server:
        yield server.repository_url("repo"), server, server.cert


def _trusting(root: Path, cert: Path, **options: object) -> Git:
    git = Git(root, timeout=60, allowlist=["127.0.0.1"], **options)  # type: ignore[arg-type]
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitconfig").write_text(f"[http]\n\tsslCAInfo = {cert}\n")  # git's HOME is the workspace
    return git


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


async def test_a_push_token_reaches_the_forge_and_nowhere_else(
    tmp_path: Path, forge: tuple[str, GitServer, Path]
) -> None:
    url, record, cert = forge
    workspace = tmp_path / "workspaces"
    git = _trusting(workspace, cert)
    mirror = await git.mirror(url)
    base = await git.resolve_branch(mirror, "main")
    tree = await git.worktree(mirror, workspace / "wt" / "f1", base)
    (tree / "new.txt").write_text("hello\n")
    commit = await git.commit(tree, "Add new\n", Author("Bot", "bot@x"), "2026-01-01T00:00:00+00:00")

    with pytest.raises(GitError):  # no token configured: the forge refuses the push
        await git.push(tree, url, commit, "feature/f1")
    pushing = _trusting(workspace, cert, push_credentials=PushCredentials("x-access-token", TOKEN))
    await pushing.push(tree, url, commit, "feature/f1")
    assert _git("--git-dir", str(record.root / "repo.git"), "rev-parse", "feature/f1").strip() == commit

    sent = [path for path, authorization in record.authorizations if authorization]
    assert sent
    assert all("git-receive-pack" in path for path in sent)  # never sent while cloning or listing
    assert _files_containing(workspace, TOKEN.encode()) == []
    assert _files_containing(workspace, base64.b64encode(f"x-access-token:{TOKEN}".encode())) == []
    assert TOKEN not in (mirror / "config").read_text()
    assert "credential" not in (mirror / "config").read_text()


def _grow(origin: Path, work: Path, megabytes: int) -> None:
    """Push a commit of `megabytes` of incompressible data to `origin`."""
    _git("clone", "-q", str(origin), str(work))
    (work / "blob.bin").write_bytes(os.urandom(megabytes * 1024 * 1024))
    _git("add", "blob.bin", cwd=work)
    _git("commit", "-qm", "big", cwd=work)
    _git("push", "-q", "origin", "main", cwd=work)


async def test_a_repository_over_the_size_limit_is_refused_and_removed(tmp_path: Path, origin: Path) -> None:
    _grow(origin, tmp_path / "big", 2)
    git = Git(tmp_path / "w", timeout=60, allow_local=True, max_repository_mb=1)
    with pytest.raises(RepositoryRefused, match="over the limit of 1 MB"):
        await git.mirror(str(origin))
    assert not git.mirror_path(str(origin)).exists()
    assert not git.mirror_path(str(origin)).with_suffix(".partial").exists()
    assert await Git(tmp_path / "w3", timeout=60, allow_local=True, max_repository_mb=10).mirror(str(origin))


async def test_a_download_is_stopped_as_soon_as_it_outgrows_the_limit(
    tmp_path: Path, origin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not after the whole repository landed on disk: git is killed mid-transfer (file:// is a real
    transport, unlike a plain path, which git copies or hardlinks)."""
    _grow(origin, tmp_path / "big", 48)
    monkeypatch.setattr(git_module, "_SIZE_POLL_SECONDS", 0.005)
    git = Git(tmp_path / "w", timeout=60, allow_local=True, max_repository_mb=2)

    with pytest.raises(RepositoryRefused, match="stopped while downloading"):
        await git.mirror(f"file://{origin}")

    assert not git.mirror_path(f"file://{origin}").with_suffix(".partial").exists()
    assert not git.mirror_path(f"file://{origin}").exists()


async def test_a_shallow_mirror_still_builds_and_delivers(
    tmp_path: Path, forge: tuple[str, GitServer, Path]
) -> None:
    url, record, cert = forge
    credentials = PushCredentials("x-access-token", TOKEN)
    git = _trusting(tmp_path / "w", cert, clone_depth=1, push_credentials=credentials)
    mirror = await git.mirror(url)
    assert (mirror / "shallow").exists()
    base = await git.resolve_branch(mirror, "main")
    assert _git("--git-dir", str(mirror), "rev-list", "--count", "--all").strip() == "1"
    tree = await git.worktree(mirror, tmp_path / "wt", base)
    (tree / "x.txt").write_text("x\n")
    commit = await git.commit(tree, "x\n", Author("Bot", "bot@x"), "2026-01-01T00:00:00+00:00")
    await git.push(tree, url, commit, "feature/shallow")
    assert _git("--git-dir", str(record.root / "repo.git"), "rev-parse", "feature/shallow").strip() == commit
    await git.mirror(url)
    assert (mirror / "shallow").exists()  # a later fetch keeps the mirror shallow


async def test_submodules_are_never_fetched(tmp_path: Path, origin: Path) -> None:
    secret = tmp_path / "secret"
    _git("init", "-q", "--initial-branch=main", str(secret))
    (secret / "private.txt").write_text("do not fetch\n")
    _git("add", "-A", cwd=secret)
    _git("commit", "-qm", "s", cwd=secret)
    work = tmp_path / "work"
    _git("clone", "-q", str(origin), str(work))
    _git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(secret), "vendor/secret", cwd=work)
    _git("commit", "-qm", "add submodule", cwd=work)
    _git("push", "-q", "origin", "main", cwd=work)

    git = Git(tmp_path / "w", timeout=60, allow_local=True)
    mirror = await git.mirror(str(origin))
    tree = await git.worktree(mirror, tmp_path / "wt", await git.resolve_branch(mirror, "main"))
    assert (tree / ".gitmodules").exists()
    assert list((tree / "vendor" / "secret").iterdir()) == []
    assert not (mirror / "modules").exists()
    assert _files_containing(tmp_path / "w", b"do not fetch") == []


async def test_internal_hosts_are_refused_right_before_git_connects(tmp_path: Path) -> None:
    git = Git(tmp_path / "w", timeout=30)
    for url in ("https://127.0.0.1:1/r.git", "https://169.254.169.254/r.git", "ssh://git@10.0.0.1/r.git"):
        with pytest.raises(RepositoryRefused, match="internal address"):
            await git.mirror(url)
    with pytest.raises(RepositoryRefused, match="internal address"):
        await git.mirror("https://[::1]/r.git")
    assert not (tmp_path / "w" / "mirrors").exists()


async def test_ssh_connects_to_the_address_checked_and_checks_the_host_key_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: ssh must not resolve the host again. The `ssh` git runs is a recorder here."""
    tools = tmp_path / "bin"
    tools.mkdir()
    record = tmp_path / "ssh-args"
    (tools / "ssh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit 255\n')
    (tools / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    git = Git(tmp_path / "w", timeout=30, allowlist=["localhost"])

    with pytest.raises(GitError):
        await git.mirror("ssh://git@localhost:2222/r.git")

    args = record.read_text().splitlines()
    options = [args[i + 1] for i, arg in enumerate(args) if arg == "-o"]
    assert "BatchMode=yes" in options
    assert "HostKeyAlias=localhost" in options
    [pinned] = [option for option in options if option.startswith("HostName=")]
    assert pinned.removeprefix("HostName=") in {"127.0.0.1", "::1"}


async def test_a_symlink_the_agent_creates_is_caught_by_the_patch_check(tmp_path: Path, origin: Path) -> None:
    git = Git(tmp_path / "w", timeout=60, allow_local=True)
    mirror = await git.mirror(str(origin))
    base = await git.resolve_branch(mirror, "main")
    tree = await git.worktree(mirror, tmp_path / "wt", base)
    (tree / "escape").symlink_to("/etc")
    (tree / "ok.txt").write_text("fine\n")
    diff = await git.diff(tree, base)
    assert check_patch_paths(diff) == ["escape: creates or changes a symbolic link"]
