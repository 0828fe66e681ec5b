"""Git through the git CLI: a cached bare mirror per repository, a worktree per feature, delivery by push.

Shared by the worker (checkout, diff, delivery) and by the executor and reviewer (each materialises
base commit + patch in a worktree of its own, so no service needs another's disk).

Every command runs with hooks disabled, no terminal prompt, a protocol allow-list and a timeout: the
repository URL comes from a requester and the repository content from anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ASKPASS": "/bin/false",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
    "LC_ALL": "C",
}
_REMOTE_SCHEMES = ("https", "ssh")
_LOCAL_SCHEMES = ("file",)


class GitError(RuntimeError):
    """A git command failed; the message is fit to show on the feature."""


class RepositoryRefused(ValueError):
    """The repository URL is not one this deployment may fetch."""


def check_repository_url(url: str, *, allow_local: bool) -> str:
    """Refuse URLs git should not fetch here. Pure: no network; returns the URL to use."""
    if url.startswith("-"):
        raise RepositoryRefused("repository_url must not start with '-'")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    scp_like = not scheme and ":" in url and not url.startswith(("/", ".")) and "@" in url.split(":", 1)[0]
    if scheme in _REMOTE_SCHEMES or scp_like:
        if parts.password:
            raise RepositoryRefused("repository_url must not embed credentials")
        return url
    if scheme in _LOCAL_SCHEMES or not scheme:
        if not allow_local:
            raise RepositoryRefused(
                "local repositories are not allowed here (set ALLOW_LOCAL_REPOSITORIES=true to allow them)"
            )
        return url
    raise RepositoryRefused(f"repository_url scheme '{scheme}' is not allowed; use https or ssh")


def _protocols(allow_local: bool) -> list[str]:
    allowed = ["https", "ssh"] + (["file"] if allow_local else [])
    return [
        "-c",
        "protocol.allow=never",
        *(arg for p in allowed for arg in ("-c", f"protocol.{p}.allow=always")),
    ]


@dataclass(frozen=True)
class Author:
    name: str
    email: str


class Git:
    def __init__(self, root: Path, *, timeout: float = 300.0, allow_local: bool = False) -> None:
        self.root = root
        self.timeout = timeout
        self.allow_local = allow_local
        self._hooks = root / ".empty-hooks"

    async def run(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        self._hooks.mkdir(parents=True, exist_ok=True)
        argv = [
            "git",
            "-c",
            f"core.hooksPath={self._hooks}",
            "-c",
            "submodule.recurse=false",
            *_protocols(self.allow_local),
            *args,
        ]
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.root),
                **_GIT_ENV,
                **(env or {}),
            },
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), timeout=self.timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise GitError(f"git {args[0]} timed out after {self.timeout:.0f} s") from None
        if process.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise GitError(
                f"git {args[0]} failed: {message[-1] if message else 'exit ' + str(process.returncode)}"
            )
        return out.decode(errors="replace")

    # -- mirrors ---------------------------------------------------------------------------------------

    def mirror_path(self, url: str) -> Path:
        return self.root / "mirrors" / (hashlib.sha256(url.encode()).hexdigest()[:24] + ".git")

    @contextlib.asynccontextmanager
    async def _locked(self, path: Path) -> AsyncIterator[None]:
        """A file lock, so replicas sharing a workspace volume do not fetch into one mirror at once."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with (path.parent / (path.name + ".lock")).open("w") as handle:
            await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    async def mirror(self, url: str) -> Path:
        """Clone a bare mirror on first use, fetch into it afterwards; returns its path."""
        url = check_repository_url(url, allow_local=self.allow_local)
        path = self.mirror_path(url)
        async with self._locked(path):
            if (path / "HEAD").exists():
                await self.run(
                    "--git-dir", str(path), "fetch", "--prune", "--no-recurse-submodules", "origin"
                )
            else:
                partial = path.with_suffix(".partial")
                shutil.rmtree(partial, ignore_errors=True)
                await self.run("clone", "--mirror", "--no-recurse-submodules", "--", url, str(partial))
                partial.rename(path)
        return path

    async def resolve_branch(self, mirror: Path, branch: str) -> str:
        try:
            return (
                await self.run(
                    "--git-dir",
                    str(mirror),
                    "rev-parse",
                    "--verify",
                    "--end-of-options",
                    f"refs/heads/{branch}^{{commit}}",
                )
            ).strip()
        except GitError:
            raise GitError(f"branch '{branch}' does not exist in the repository") from None

    # -- worktrees -------------------------------------------------------------------------------------

    async def worktree(self, mirror: Path, path: Path, commit: str) -> Path:
        """A fresh detached worktree of `commit` at `path` (an earlier one there is discarded)."""
        await self.remove_worktree(mirror, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        async with self._locked(mirror):
            await self.run(
                "--git-dir", str(mirror), "worktree", "add", "--force", "--detach", str(path), commit
            )
        return path

    async def remove_worktree(self, mirror: Path, path: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, path, True)
        async with self._locked(mirror):
            await self.run("--git-dir", str(mirror), "worktree", "prune")

    async def apply(self, worktree: Path, patch: str) -> None:
        if not patch.strip():
            return
        await self.run(
            "apply", "--index", "--binary", "--whitespace=nowarn", "-", cwd=worktree, stdin=patch.encode()
        )

    async def diff(self, worktree: Path, base: str) -> str:
        """Everything changed since `base`, new files included, as a binary-safe unified diff."""
        await self.run("add", "--all", cwd=worktree)
        return await self.run(
            "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", base, cwd=worktree
        )

    async def changed_files(self, worktree: Path, base: str) -> Sequence[str]:
        await self.run("add", "--all", cwd=worktree)
        out = await self.run("diff", "--cached", "--name-only", "-z", base, cwd=worktree)
        return [name for name in out.split("\0") if name]

    # -- delivery --------------------------------------------------------------------------------------

    async def commit(self, worktree: Path, message: str, author: Author, timestamp: str) -> str:
        """Commit the index with fixed identity and dates, so a redone delivery makes the same commit."""
        identity = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
            "GIT_AUTHOR_DATE": timestamp,
            "GIT_COMMITTER_DATE": timestamp,
        }
        await self.run("add", "--all", cwd=worktree)
        await self.run(
            "commit",
            "--no-verify",
            "--no-gpg-sign",
            "-q",
            "-F",
            "-",
            cwd=worktree,
            stdin=message.encode(),
            env=identity,
        )
        return (await self.run("rev-parse", "HEAD", cwd=worktree)).strip()

    async def push(self, worktree: Path, url: str, commit: str, branch: str) -> None:
        url = check_repository_url(url, allow_local=self.allow_local)
        await self.run(
            "push", "--no-verify", "--porcelain", "--", url, f"{commit}:refs/heads/{branch}", cwd=worktree
        )

    async def remote_branch_commit(self, url: str, branch: str) -> str | None:
        out = await self.run("ls-remote", "--", url, f"refs/heads/{branch}")
        return out.split()[0] if out.strip() else None
