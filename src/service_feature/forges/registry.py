"""Which forge account serves a repository, and the adapter that speaks to it.

An operator configures one `ForgeAccount` per forge host (github.com, a GitLab server, a Gitea server); a
feature names its repository by clone URL, and `resolve` finds the account whose git host matches and the
repository's path on that forge.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from service_feature.forges.base import Forge, ForgeKind
from service_feature.forges.gitea import GiteaForge
from service_feature.forges.github import GitHubForge
from service_feature.forges.gitlab import GitLabForge
from service_feature.forges.retry import RetryPolicy, Sleep

__all__ = [
    "ForgeAccount",
    "RetryPolicy",
    "default_account",
    "open_forge",
    "repository_location",
    "resolve",
]

# git@host:owner/repo.git (scp-like syntax: no scheme, a colon before the path, no port)
_SCP_LIKE = re.compile(r"^(?:[^@/\s]+@)?(?P<host>[^:/\s]+):(?P<path>[^/\s].*)$")

_DEFAULT_API_URLS = {
    "github.com": (ForgeKind.github, "https://api.github.com", "GITHUB_TOKEN"),
    "gitlab.com": (ForgeKind.gitlab, "https://gitlab.com", "GITLAB_TOKEN"),
}


@dataclass(frozen=True)
class ForgeAccount:
    """One forge the platform opens pull requests on.

    `host` is the git host (`host` or `host:port`) of the clone URLs it serves; `api_url` is the API root
    (GitHub: `https://api.github.com` or `https://host/api/v3`; GitLab and Gitea: the server's root);
    `token_setting` names the setting holding `token`, for error messages."""

    kind: ForgeKind
    api_url: str
    token: str = field(repr=False)
    token_setting: str
    host: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", self.host.lower())


def default_account(host: str, token: str, token_setting: str | None = None) -> ForgeAccount:
    """The account for github.com or gitlab.com, whose API URLs are known."""
    known = _DEFAULT_API_URLS.get(host.lower())
    if known is None:
        raise ValueError(f"no default API URL for {host}: configure its kind and API URL")
    kind, api_url, setting = known
    return ForgeAccount(kind, api_url, token, token_setting or setting, host)


def repository_location(repository_url: str) -> tuple[str, str] | None:
    """(host[:port], owner/…/name) of an https, http or scp-like (`git@host:owner/name.git`) clone URL."""
    url = repository_url.strip()
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http", "ssh") or not parts.hostname:
            return None
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        path = parts.path
    else:
        match = _SCP_LIKE.match(url)
        if match is None:
            return None
        host, path = match["host"], match["path"]
    path = path.strip("/").removesuffix(".git").strip("/")
    if path.count("/") < 1 or any(not segment for segment in path.split("/")):
        return None
    return host.lower(), path


def resolve(repository_url: str, accounts: Iterable[ForgeAccount]) -> tuple[ForgeAccount, str] | None:
    """The account serving `repository_url` and the repository's path on it, or None."""
    location = repository_location(repository_url)
    if location is None:
        return None
    host, path = location
    for account in accounts:
        if account.host == host:
            return account, path
    return None


def open_forge(
    account: ForgeAccount,
    *,
    policy: RetryPolicy | None = None,
    sleep: Sleep = asyncio.sleep,
    timeout: float = 30.0,
) -> Forge:
    """The adapter for `account`; close it with `aclose()`."""
    adapter = _ADAPTERS[account.kind]
    return adapter(
        account.api_url,
        account.token,
        token_setting=account.token_setting,
        policy=policy,
        sleep=sleep,
        timeout=timeout,
    )


_ADAPTERS: dict[ForgeKind, type[GitHubForge] | type[GitLabForge] | type[GiteaForge]] = {
    ForgeKind.github: GitHubForge,
    ForgeKind.gitlab: GitLabForge,
    ForgeKind.gitea: GiteaForge,
}
