"""Which account serves a clone URL, the adapters `open_forge` builds, and the retry policy's arithmetic."""

from __future__ import annotations

import email.utils

import pytest

from service_feature.forges.base import ForgeAuthError, ForgeKind, ForgeRefused, ForgeUnavailable
from service_feature.forges.gitea import GiteaForge
from service_feature.forges.github import GitHubForge, graphql_url
from service_feature.forges.gitlab import GitLabForge, is_draft_title, strip_draft
from service_feature.forges.registry import (
    ForgeAccount,
    default_account,
    open_forge,
    repository_location,
    resolve,
)
from service_feature.forges.retry import (
    CallFailure,
    ForgeContext,
    RetryPolicy,
    backoff,
    call_with_retries,
    is_rate_limited,
    parse_wait,
    to_forge_error,
)

GITHUB = default_account("github.com", "ghp_secret")
GITLAB = ForgeAccount(
    ForgeKind.gitlab, "https://gitlab.example.com", "glpat-secret", "GITLAB_TOKEN", "gitlab.example.com"
)
GITEA = ForgeAccount(
    ForgeKind.gitea, "https://git.example.com:3000", "gt-secret", "GITEA_TOKEN", "git.example.com:3000"
)
ACCOUNTS = [GITHUB, GITLAB, GITEA]


@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("https://github.com/acme/app.git", "github.com", "acme/app"),
        ("https://github.com/acme/app", "github.com", "acme/app"),
        ("https://github.com/acme/app/", "github.com", "acme/app"),
        ("http://GitHub.com/acme/app.git", "github.com", "acme/app"),
        ("git@github.com:acme/app.git", "github.com", "acme/app"),
        ("github.com:acme/app", "github.com", "acme/app"),
        ("https://gitlab.example.com/acme/platform/app.git", "gitlab.example.com", "acme/platform/app"),
        ("https://user@git.example.com:3000/acme/app.git", "git.example.com:3000", "acme/app"),
        ("ssh://git@gitlab.example.com/acme/app.git", "gitlab.example.com", "acme/app"),
    ],
)
def test_repository_location(url: str, host: str, path: str) -> None:
    assert repository_location(url) == (host, path)


@pytest.mark.parametrize(
    "url", ["https://github.com/acme", "ftp://github.com/acme/app", "/srv/git/app.git", "file:///srv/app", ""]
)
def test_urls_that_name_no_forge_repository(url: str) -> None:
    assert repository_location(url) is None


def test_resolve_picks_the_account_by_host() -> None:
    assert resolve("git@github.com:acme/app.git", ACCOUNTS) == (GITHUB, "acme/app")
    assert resolve("https://gitlab.example.com/acme/platform/app", ACCOUNTS) == (GITLAB, "acme/platform/app")
    assert resolve("https://git.example.com:3000/acme/app.git", ACCOUNTS) == (GITEA, "acme/app")
    assert resolve("https://git.example.com/acme/app.git", ACCOUNTS) is None, "the port is part of the host"
    assert resolve("https://bitbucket.org/acme/app.git", ACCOUNTS) is None


def test_default_accounts() -> None:
    assert (GITHUB.kind, GITHUB.api_url, GITHUB.token_setting) == (
        ForgeKind.github,
        "https://api.github.com",
        "GITHUB_TOKEN",
    )
    gitlab = default_account("gitlab.com", "t", "MY_GITLAB_TOKEN")
    assert (gitlab.kind, gitlab.api_url, gitlab.token_setting) == (
        ForgeKind.gitlab,
        "https://gitlab.com",
        "MY_GITLAB_TOKEN",
    )
    with pytest.raises(ValueError, match="no default API URL"):
        default_account("gitea.example.com", "t")


async def test_open_forge_builds_the_adapter_of_the_kind() -> None:
    for account, adapter_type in [(GITHUB, GitHubForge), (GITLAB, GitLabForge), (GITEA, GiteaForge)]:
        forge = open_forge(account)
        try:
            assert isinstance(forge, adapter_type)
            assert forge.kind is account.kind
            assert account.token not in repr(forge)
            assert account.token not in repr(account)
        finally:
            await forge.aclose()


@pytest.mark.parametrize(
    ("api_url", "graphql"),
    [
        ("https://api.github.com", "https://api.github.com/graphql"),
        ("https://api.github.com/", "https://api.github.com/graphql"),
        ("https://ghe.example.com/api/v3", "https://ghe.example.com/api/graphql"),
        ("https://ghe.example.com/api/v3/", "https://ghe.example.com/api/graphql"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/graphql"),
    ],
)
def test_graphql_url(api_url: str, graphql: str) -> None:
    assert graphql_url(api_url) == graphql


@pytest.mark.parametrize(
    ("title", "draft", "plain"),
    [
        ("Draft: Add x", True, "Add x"),
        ("[Draft] Add x", True, "Add x"),
        ("(draft) Draft: Add x", True, "Add x"),
        ("Add x", False, "Add x"),
        ("Drafting the spec", False, "Drafting the spec"),
    ],
)
def test_gitlab_draft_titles(title: str, draft: bool, plain: str) -> None:
    assert is_draft_title(title) is draft
    assert strip_draft(title) == plain


# ---------------------------------------------------------------------------------------------- retry

CONTEXT = ForgeContext("github (https://api.github.com)", "GITHUB_TOKEN")


def test_parse_wait_reads_every_forges_headers() -> None:
    now = 1_800_000_000.0
    assert parse_wait({"retry-after": "7"}, now) == 7.0
    http_date = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_wait({"retry-after": http_date}, now) == pytest.approx(12, abs=1)
    assert parse_wait({"x-ratelimit-reset": str(int(now + 30))}, now) == 30.0
    assert parse_wait({"ratelimit-reset": str(int(now + 5))}, now) == 5.0  # GitLab: an epoch
    assert parse_wait({"ratelimit-reset": "9"}, now) == 9.0  # IETF draft: a delay
    assert parse_wait({"retry-after": "soon"}, now) is None
    assert parse_wait({}, now) is None
    assert parse_wait({"x-ratelimit-reset": str(int(now - 30))}, now) == 0.0


def test_rate_limited_403s() -> None:
    assert is_rate_limited(403, {"x-ratelimit-remaining": "0"})
    assert is_rate_limited(403, {"retry-after": "60"})  # GitHub's secondary rate limit
    assert not is_rate_limited(403, {"x-ratelimit-remaining": "4999"})
    assert not is_rate_limited(401, {"x-ratelimit-remaining": "0"})


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=8.0)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        for _ in range(20):
            assert step / 2 <= backoff(policy, attempt) <= step


def test_errors_are_sorted() -> None:
    assert isinstance(to_forge_error(CallFailure(401, "Bad credentials"), CONTEXT, 1), ForgeAuthError)
    assert isinstance(to_forge_error(CallFailure(403, "Resource not accessible"), CONTEXT, 1), ForgeAuthError)
    assert isinstance(to_forge_error(CallFailure(404, "Not Found"), CONTEXT, 1), ForgeRefused)
    assert isinstance(to_forge_error(CallFailure(422, "Validation Failed"), CONTEXT, 1), ForgeRefused)
    assert isinstance(to_forge_error(CallFailure(409, "conflict"), CONTEXT, 1), ForgeRefused)
    limited = to_forge_error(CallFailure(403, "rate", 30.0, rate_limited=True), CONTEXT, 3)
    assert isinstance(limited, ForgeUnavailable)
    assert limited.retry_after == 30.0
    auth = to_forge_error(CallFailure(401, "Bad credentials"), CONTEXT, 1)
    assert "GITHUB_TOKEN" in str(auth)
    assert "https://api.github.com" in str(auth)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(initial_wait=-1)


async def test_call_with_retries_stops_at_a_permanent_failure() -> None:
    calls = 0
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise CallFailure(500, "boom")
        raise CallFailure(404, "Not Found")

    with pytest.raises(ForgeRefused):
        await call_with_retries(call, context=CONTEXT, policy=RetryPolicy(), sleep=sleep)
    assert calls == 2
    assert len(waits) == 1
