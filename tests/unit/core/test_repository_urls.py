"""Repository URLs: schemes, credentials, the host allow-list, and hosts inside the network (SSRF)."""

import pytest

from service_feature.git import RepositoryRefused, check_repository_host, check_repository_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://token@github.com/a/b.git", "credentials"),
        ("ssh://git:pw@github.com/a/b.git", "credentials"),
        ("https:///a.git", "no valid host"),
        ("ssh://-oProxyCommand=x/a", "no valid host"),
        ("https://github.com/a\n.git", "control characters"),
        ("https://github.com:99999/a.git", "invalid port"),
    ],
)
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(RepositoryRefused, match=message):
        check_repository_url(url, allow_local=False)


def test_the_allowlist_admits_only_matching_hosts() -> None:
    allow = ("github.com", "*.corp.example")
    assert check_repository_url("https://GitHub.com/a/b.git", allow_local=False, allowlist=allow)
    assert check_repository_url("git@git.corp.example:a/b", allow_local=False, allowlist=allow)
    with pytest.raises(RepositoryRefused, match="not in REPOSITORY_ALLOWLIST"):
        check_repository_url("https://gitlab.com/a/b.git", allow_local=False, allowlist=allow)
    with pytest.raises(RepositoryRefused, match="not in REPOSITORY_ALLOWLIST"):
        check_repository_url("https://corp.example.evil.com/a.git", allow_local=False, allowlist=allow)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/a.git",
        "https://localhost/a.git",
        "https://10.1.2.3/a.git",
        "https://192.168.0.1/a.git",
        "https://172.16.0.1/a.git",
        "https://100.64.0.1/a.git",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/a.git",
        "https://[fd00:ec2::254]/a.git",
        "https://[::ffff:127.0.0.1]/a.git",
        "https://0.0.0.0/a.git",
        "https://2130706433/a.git",  # 127.0.0.1 as one number
        "ssh://git@127.0.0.1/a.git",
        "git@10.0.0.1:a/b.git",
    ],
)
async def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(RepositoryRefused, match="internal address"):
        await check_repository_host(url)


async def test_an_allowlisted_host_may_be_internal_but_metadata_never() -> None:
    assert await check_repository_host("https://127.0.0.1/a.git", allowlist=["127.0.0.1"]) == ("127.0.0.1",)
    with pytest.raises(RepositoryRefused, match="internal address"):
        await check_repository_host("https://169.254.169.254/", allowlist=["*"])
    with pytest.raises(RepositoryRefused, match="internal address"):
        await check_repository_host("https://[fd00:ec2::254]/", allowlist=["*"])


async def test_public_and_local_repositories() -> None:
    assert await check_repository_host("https://8.8.8.8/a.git") == ("8.8.8.8",)
    assert await check_repository_host("/srv/repo.git") == ()


async def test_an_unresolvable_host_is_refused() -> None:
    with pytest.raises(RepositoryRefused, match="cannot be resolved"):
        await check_repository_host("https://no-such-host.invalid/a.git")
