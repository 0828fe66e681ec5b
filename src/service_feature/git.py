"""Git through the git CLI: a cached bare mirror per repository, a worktree per feature, delivery by push.

Shared by the worker (checkout, diff, delivery) and by the executor and reviewer (each materialises
base commit + patch in a worktree of its own, so no service needs another's disk).

Every command runs with hooks disabled, no terminal prompt, a protocol allow-list, no submodules, no HTTP
redirects and a timeout: the repository URL comes from a requester and the repository content from anyone.
A remote host is resolved and refused when it points inside the network (loopback, private, link-local,
cloud metadata) unless REPOSITORY_ALLOWLIST names it; HTTPS and SSH fetches are pinned to the addresses
checked, so a DNS answer that changes between check and clone (rebinding) cannot redirect them. Push
credentials never touch disk: a credential helper hands git the token from the environment of the push
alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import fnmatch
import hashlib
import ipaddress
import os
import shutil
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from service_feature.processes import kill_group

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ASKPASS": "/bin/false",
    "LC_ALL": "C",
}
# A config value, not GIT_SSH_COMMAND: the environment variable would win over the pinned one (`_pinned`).
_SSH_COMMAND = "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new"
_REMOTE_SCHEMES = ("https", "ssh")
_SIZE_POLL_SECONDS = 0.1
_LOCAL_SCHEMES = ("file",)


class GitError(RuntimeError):
    """A git command failed; the message is fit to show on the feature. `detail` is git's own account
    (its meaningful stderr lines, or the timeout), for callers that say what the command was for.
    `transient`: the remote did not answer in time or the network failed, so the same command may work
    when tried again; anything else (no such branch or repository, access refused) will not."""

    def __init__(self, message: str, detail: str = "", *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message
        self.transient = is_network_failure(self.detail) if transient is None else transient


# git's and curl's words for a remote that could not be reached or dropped the connection: worth a retry.
_NETWORK_FAILURES = (
    "could not resolve host",
    "could not resolve hostname",
    "connection refused",
    "connection timed out",
    "connection reset",
    "operation timed out",
    "failed to connect",
    "the remote end hung up unexpectedly",
    "early eof",
    "rpc failed",
    "temporary failure in name resolution",
    "network is unreachable",
    "the requested url returned error: 5",
)


def is_network_failure(detail: str) -> bool:
    lowered = detail.lower()
    return any(words in lowered for words in _NETWORK_FAILURES)


# Lines of git's stderr that say nothing about this failure: progress, hints, and the generic advice after
# every failed fetch (which, being last, used to be the whole message: "and the repository exists.").
_STDERR_NOISE = (
    "Cloning into",
    "hint:",
    "Please make sure you have the correct access rights",
    "and the repository exists.",
)
_STDERR_CHARS = 1000
_WHAT_TO_CHECK = (
    "check repository_url: it must name a git repository that exists and that every service can read"
)
_BRANCHES_LISTED = 10


def stderr_summary(stderr: str) -> str:
    """git's meaningful stderr lines as one: noise dropped, `fatal:`/`error:` prefixes off, no repeats."""
    lines: list[str] = []
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line or line.startswith(_STDERR_NOISE):
            continue
        line = line.removeprefix("fatal: ").removeprefix("error: ")
        if line not in lines:
            lines.append(line)
    return "; ".join(lines)[-_STDERR_CHARS:]


def _subcommand(args: Sequence[str]) -> str:
    """The git subcommand among the arguments (`clone`, `fetch`), past global options like --git-dir."""
    takes_value = False
    for arg in args:
        if takes_value:
            takes_value = False
        elif arg in ("--git-dir", "--work-tree", "-C", "-c"):
            takes_value = True
        elif not arg.startswith("-"):
            return arg
    return args[0] if args else "git"


def local_repository_problem(url: str) -> str | None:
    """What is wrong with a local repository's path, if anything: git says "does not exist" both for a
    missing path and for a directory that is not a repository. None for a remote URL."""
    if _remote(url) is not None or urlsplit(url).scheme.lower() not in ("", *_LOCAL_SCHEMES):
        return None
    path = Path(urlsplit(url).path)
    if not path.exists():
        return f"{path} does not exist on this host"
    is_bare = (path / "HEAD").is_file() and (path / "objects").is_dir()
    if not path.is_dir() or not (is_bare or (path / ".git").exists()):
        return f"{path} exists but is not a git repository"
    return None


class RepositoryRefused(ValueError):
    """The repository URL is not one this deployment may fetch."""


def check_repository_url(url: str, *, allow_local: bool, allowlist: Sequence[str] = ()) -> str:
    """Refuse URLs git should not fetch here. Pure: no network; returns the URL to use.

    `allowlist`: host patterns (`github.com`, `*.corp.example`); when given, remote hosts must match one."""
    if url.startswith("-"):
        raise RepositoryRefused("repository_url must not start with '-'")
    if any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise RepositoryRefused("repository_url must not contain control characters")
    remote = _remote(url)
    if remote is not None:
        host, _ = remote
        if not host or host.startswith("-"):
            raise RepositoryRefused("repository_url names no valid host")
        if allowlist and not _allowed(host, allowlist):
            raise RepositoryRefused(f"repository host '{host}' is not in REPOSITORY_ALLOWLIST")
        return url
    scheme = urlsplit(url).scheme.lower()
    if scheme in _LOCAL_SCHEMES or not scheme:
        if not allow_local:
            raise RepositoryRefused(
                "local repositories are not allowed here (set ALLOW_LOCAL_REPOSITORIES=true to allow them)"
            )
        # A relative path would mean whatever each service's working directory makes of it.
        if not scheme and not url.startswith("/"):
            raise RepositoryRefused("a local repository_url must be an absolute path or a file:// URL")
        return url
    raise RepositoryRefused(f"repository_url scheme '{scheme}' is not allowed; use https or ssh")


def check_no_credentials(url: str) -> str:
    """Refuse a URL with credentials in it: a password, or any user but ssh's (an https user is a token).
    FeatureRequest applies it, so such a URL is never stored, logged or passed to git, whatever the path."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise RepositoryRefused("repository_url is not a valid URL") from None
    if parts.password is not None or (parts.scheme.lower() != "ssh" and parts.username is not None):
        raise RepositoryRefused("repository_url must not embed credentials")
    return url


def _remote(url: str) -> tuple[str, int] | None:
    """(host, port) of an https, ssh or scp-like (`git@host:path`) URL; None for anything else."""
    check_no_credentials(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _REMOTE_SCHEMES:
        try:
            port = parts.port
        except ValueError:
            raise RepositoryRefused("repository_url has an invalid port") from None
        return (parts.hostname or "", port or (443 if scheme == "https" else 22))
    head = url.split(":", 1)[0]
    if not scheme and ":" in url and not url.startswith(("/", ".")) and "@" in head:
        return (head.rsplit("@", 1)[1].strip("[]").lower(), 22)
    return None


def _allowed(host: str, allowlist: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(host.lower(), pattern.lower()) for pattern in allowlist)


_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


async def check_repository_host(url: str, *, allowlist: Sequence[str] = ()) -> tuple[str, ...]:
    """Resolve a remote URL's host and refuse it when any address is internal (loopback, private,
    link-local, reserved) unless the allow-list names the host; cloud metadata addresses are refused
    always. Returns the addresses checked (empty for a local repository), for pinning."""
    remote = _remote(url)
    if remote is None:
        return ()
    host, port = remote
    try:
        async with asyncio.timeout(10):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise RepositoryRefused(f"repository host '{host}' cannot be resolved") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    trusted = bool(allowlist) and _allowed(host, allowlist)
    for text in addresses:
        address = ipaddress.ip_address(text)
        if address in _METADATA or (not trusted and _internal(address)):
            raise RepositoryRefused(
                f"repository host '{host}' resolves to an internal address ({text}); "
                "name it in REPOSITORY_ALLOWLIST to allow it"
            )
    return addresses


def _pinned(url: str, addresses: Sequence[str]) -> list[str]:
    """Options that make git connect to the addresses checked, not to a new DNS answer: curl's resolve list
    for https; for ssh, the first address as ssh's HostName, with the host kept as HostKeyAlias so that the
    host key is still checked against the name."""
    remote = _remote(url)
    if not addresses or remote is None:
        return []
    host, port = remote
    if url.lower().startswith("https:"):
        listed = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
        return ["-c", f"http.curloptResolve={host}:{port}:{listed}"]
    return ["-c", f"core.sshCommand={_SSH_COMMAND} -o HostName={addresses[0]} -o HostKeyAlias={host}"]


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
    def __init__(
        self,
        root: Path,
        *,
        timeout: float = 300.0,
        allow_local: bool = False,
        allowlist: Sequence[str] = (),
        max_repository_mb: int | None = None,
        clone_depth: int | None = None,
        push_credentials: PushCredentials | None = None,
    ) -> None:
        self.root = root
        self.timeout = timeout
        self.allow_local = allow_local
        self.allowlist = tuple(allowlist)
        self.max_repository_mb = max_repository_mb
        self.clone_depth = clone_depth
        self._push_environment = push_credentials.environment() if push_credentials else {}
        self._hooks = root / ".empty-hooks"

    async def _vet(self, url: str) -> list[str]:
        """Check the URL and (again, right before git connects) its host; the pinning arguments."""
        url = check_repository_url(url, allow_local=self.allow_local, allowlist=self.allowlist)
        return _pinned(url, await check_repository_host(url, allowlist=self.allowlist))

    async def run(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
        bounded: Path | None = None,
    ) -> str:
        """Run `git <options> <args>`; `options` are extra `-c` settings for this command alone. With
        `bounded` (a repository being downloaded into), the command is stopped as soon as that directory
        outgrows `max_repository_mb`, rather than after the whole repository landed on disk."""
        self._hooks.mkdir(parents=True, exist_ok=True)
        argv = [
            "git",
            "-c",
            f"core.hooksPath={self._hooks}",
            "-c",
            "submodule.recurse=false",
            "-c",
            "http.followRedirects=false",
            "-c",
            "transfer.fsckObjects=true",
            "-c",
            "credential.helper=",
            "-c",
            f"core.sshCommand={_SSH_COMMAND}",
            *_protocols(self.allow_local),
            *options,
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
        watchdog = None
        if bounded is not None and self.max_repository_mb is not None:
            watchdog = asyncio.create_task(self._stop_when_over_limit(bounded, process.pid))
        try:
            out, err = await asyncio.wait_for(process.communicate(stdin), timeout=self.timeout)
        except TimeoutError:
            kill_group(process.pid)  # git's helpers (remote-https, index-pack) too
            await process.wait()
            timed_out = f"timed out after {self.timeout:.0f} s"
            raise GitError(f"git {_subcommand(args)} {timed_out}", timed_out, transient=True) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if watchdog is not None and not watchdog.cancelled() and watchdog.done() and watchdog.result():
            raise RepositoryRefused(
                f"repository is over the limit of {self.max_repository_mb} MB (SF_MAX_REPOSITORY_MB): "
                f"git {args[0]} was stopped while downloading it"
            )
        if process.returncode != 0:
            detail = stderr_summary(err.decode(errors="replace")) or f"exit {process.returncode}"
            raise GitError(f"git {_subcommand(args)} failed: {detail}", detail)
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

    async def mirror(self, url: str, *, commit: str | None = None) -> Path:
        """Clone a bare mirror on first use, fetch into it afterwards; returns its path. With `commit`, a
        mirror that already has it is used as it is: later steps of a feature need its base commit, not the
        newest branches, and skipping the fetch saves a round trip to the remote per step. A mirror larger
        than `max_repository_mb` is deleted and refused."""
        pin = await self._vet(url)
        depth = [f"--depth={self.clone_depth}"] if self.clone_depth else []
        path = self.mirror_path(url)
        if commit is not None and (path / "HEAD").exists() and await self._has_commit(path, commit):
            return path
        async with self._locked(path):
            fetching = (path / "HEAD").exists()
            target = path if fetching else path.with_suffix(".partial")
            fetch_options = ["--no-recurse-submodules", *depth]
            if fetching:
                command = ["--git-dir", str(path), "fetch", "--prune", *fetch_options, "origin"]
            else:
                await asyncio.to_thread(shutil.rmtree, target, True)
                command = ["clone", "--mirror", *fetch_options, "--", url, str(target)]
            try:
                await self.run(*command, options=pin, bounded=target)
                await self._check_size(target)
            except RepositoryRefused:
                await asyncio.to_thread(shutil.rmtree, target, True)  # a cache: the next use starts afresh
                raise
            except GitError as error:
                why = local_repository_problem(url) or error.detail
                verb = "fetch" if fetching else "clone"
                raise GitError(
                    f"git {verb} of {url} failed: {why}; {_WHAT_TO_CHECK}", why, transient=error.transient
                ) from None
            if not fetching:
                target.rename(path)
        return path

    async def _stop_when_over_limit(self, path: Path, pid: int) -> bool:
        """Poll the download's size; kill git's process group and return True once it is over the limit."""
        assert self.max_repository_mb is not None
        while True:
            await asyncio.sleep(_SIZE_POLL_SECONDS)
            if await asyncio.to_thread(_disk_usage, path) > self.max_repository_mb * 1024 * 1024:
                kill_group(pid)
                return True

    async def _check_size(self, path: Path) -> None:
        if self.max_repository_mb is None:
            return
        size = await asyncio.to_thread(_disk_usage, path)
        if size > self.max_repository_mb * 1024 * 1024:
            raise RepositoryRefused(
                f"repository is {size / 1024 / 1024:.0f} MB, over the limit of {self.max_repository_mb} MB "
                "(SF_MAX_REPOSITORY_MB)"
            )

    async def _has_commit(self, mirror: Path, commit: str) -> bool:
        try:
            await self.run("--git-dir", str(mirror), "cat-file", "-e", f"{commit}^{{commit}}")
        except GitError:
            return False
        return True

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
            raise GitError(
                f"branch '{branch}' does not exist in the repository; {await self._branches_hint(mirror)}"
            ) from None

    async def _branches_hint(self, mirror: Path) -> str:
        listing = await self.run(
            "--git-dir", str(mirror), "for-each-ref", "--format=%(refname:short)", "refs/heads/"
        )
        branches = listing.split()
        if not branches:
            return "it has no branches (an empty repository?)"
        shown = ", ".join(branches[:_BRANCHES_LISTED]) + (", …" if len(branches) > _BRANCHES_LISTED else "")
        return f"set `branch` to one it has: {shown}"

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

    async def diff(
        self, worktree: Path, base: str, *, exclude: Sequence[str] = (), git_dir: Path | None = None
    ) -> str:
        """Everything changed since `base`, new files included, as a binary-safe unified diff, leaving out
        the paths in `exclude`. The prefixes and name quoting are fixed, so no configuration can change how
        the diff names files: `git apply` and the patch checks (`diffs.py`) read the same paths.

        `git_dir`: the worktree's git directory, read before untrusted code ran in the worktree (see
        `worktree_git_dir`); git then ignores the worktree's own `.git` file, which that code could have
        pointed at a repository of its making (whose config runs commands)."""
        explicit = ["--git-dir", str(git_dir), "--work-tree", str(worktree)] if git_dir else []
        pathspec = ["--", ".", *(f":(exclude,literal){path}" for path in exclude)] if exclude else []
        await self.run(*explicit, "add", "--all", *pathspec, cwd=worktree)
        return await self.run(
            *explicit,
            "-c",
            "core.quotePath=true",
            "diff",
            "--cached",
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            base,
            *pathspec,
            cwd=worktree,
        )

    async def worktree_git_dir(self, worktree: Path) -> Path:
        """The git directory of a worktree this Git made (its `.git` file's target)."""
        return Path((await self.run("rev-parse", "--absolute-git-dir", cwd=worktree)).strip())

    async def reset(self, worktree: Path, commit: str) -> None:
        """The worktree back to `commit` exactly: tracked files reset, untracked ones removed (ignored
        ones, such as build output, are kept)."""
        await self.run("reset", "-q", "--hard", commit, cwd=worktree)
        await self.run("clean", "-q", "-f", "-d", cwd=worktree)

    async def symlinks(self, worktree: Path, commit: str) -> list[str]:
        """The paths that are symbolic links in `commit`'s tree."""
        out = await self.run("ls-tree", "-r", "-z", "--full-tree", commit, cwd=worktree)
        return [entry.split("\t", 1)[1] for entry in out.split("\0") if entry.startswith("120000 ")]

    # -- delivery --------------------------------------------------------------------------------------

    async def commit(
        self,
        worktree: Path,
        message: str,
        author: Author,
        timestamp: str,
        *,
        committer: Author | None = None,
        signing_key: Path | None = None,
    ) -> str:
        """Commit the index with fixed identity and dates, so a redone delivery makes the same commit (an
        SSH signature with an Ed25519 key is deterministic too). `signing_key`: an SSH private key file the
        commit is signed with; without it, the commit is never signed, whatever a config says."""
        committer = committer or author
        identity = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
            "GIT_AUTHOR_DATE": timestamp,
            "GIT_COMMITTER_DATE": timestamp,
        }
        signing = (
            ["-c", "gpg.format=ssh", "-c", f"user.signingkey={signing_key}"]
            if signing_key is not None
            else []
        )
        await self.run("add", "--all", cwd=worktree)
        await self.run(
            "commit",
            "--no-verify",
            "--gpg-sign" if signing_key is not None else "--no-gpg-sign",
            "-q",
            "-F",
            "-",
            cwd=worktree,
            stdin=message.encode(),
            env=identity,
            options=signing,
        )
        return (await self.run("rev-parse", "HEAD", cwd=worktree)).strip()

    async def push(self, worktree: Path, url: str, commit: str, branch: str) -> None:
        pin = await self._vet(url)
        await self.run(
            "push",
            "--no-verify",
            "--porcelain",
            "--",
            url,
            f"{commit}:refs/heads/{branch}",
            cwd=worktree,
            env=self._push_environment,
            options=[*pin, *_CREDENTIAL_HELPER],
        )


# The token lives in the worker's settings (GIT_PUSH_TOKEN) and reaches only the push's git process,
# through this helper: it is never written to a config, a remote URL, the workspace or a log. The helper
# is a shell function given on the command line, so it holds no secret itself.
_CREDENTIAL_HELPER = (
    "-c",
    'credential.helper=!f() { test "$1" = get && test -n "$SF_PUSH_TOKEN" && '
    'printf "username=%s\\npassword=%s\\n" "$SF_PUSH_USERNAME" "$SF_PUSH_TOKEN"; }; f',
)


@dataclass(frozen=True)
class PushCredentials:
    """Who the worker pushes as over HTTPS (GIT_PUSH_USERNAME / GIT_PUSH_TOKEN)."""

    username: str
    token: str = field(repr=False)

    def environment(self) -> dict[str, str]:
        """What the credential helper reads: the push's git process environment only."""
        return {"SF_PUSH_TOKEN": self.token, "SF_PUSH_USERNAME": self.username} if self.token else {}


def _disk_usage(path: Path) -> int:
    """Bytes of the files under `path`; files that vanish meanwhile (git renames as it goes) count 0."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total
