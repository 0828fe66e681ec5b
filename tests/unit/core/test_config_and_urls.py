from pathlib import Path

import pytest

from service_feature.config import CommonSettings, WorkerSettings
from service_feature.git import RepositoryRefused, check_repository_url


def test_database_url_defaults_to_sqlite_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SF_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert CommonSettings().sqlalchemy_url == f"sqlite+aiosqlite:///{tmp_path}/service-feature.db"


def test_the_seeds_postgres_url_is_used_with_asyncpg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://feature:feature@postgres:5432/feature")
    assert CommonSettings().sqlalchemy_url == "postgresql+asyncpg://feature:feature@postgres:5432/feature"


def test_queue_uri_names_the_nats_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_FEATURE_REQUEST_URI", "nats://nats:4222/feature.requests")
    monkeypatch.setenv("SERVER_ADDRESS", ":9090")
    settings = CommonSettings()
    assert settings.nats_url == "nats://nats:4222"
    assert settings.listen_host_port == ("0.0.0.0", 9090)


def test_llm_provider_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_PROVIDER", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert WorkerSettings().resolved_llm_provider == "scripted"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert WorkerSettings().resolved_llm_provider == "anthropic"


@pytest.mark.parametrize(
    "url", ["https://github.com/a/b.git", "ssh://git@github.com/a/b.git", "git@github.com:a/b"]
)
def test_remote_urls_are_accepted(url: str) -> None:
    assert check_repository_url(url, allow_local=False) == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/srv/repo.git", "local repositories are not allowed"),
        ("file:///srv/repo.git", "local repositories are not allowed"),
        ("ext::sh -c touch% /tmp/pwned", "not allowed"),
        ("http://example.com/a.git", "scheme 'http' is not allowed"),
        ("https://user:secret@github.com/a/b.git", "credentials"),
        ("--upload-pack=touch /tmp/x", "must not start with '-'"),
    ],
)
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(RepositoryRefused, match=message):
        check_repository_url(url, allow_local=False)


def test_local_urls_when_allowed() -> None:
    assert check_repository_url("/srv/repo.git", allow_local=True) == "/srv/repo.git"
    assert check_repository_url("file:///srv/repo.git", allow_local=True) == "file:///srv/repo.git"
    for relative in (".", "repo", "../repo.git"):
        with pytest.raises(RepositoryRefused, match="absolute path"):
            check_repository_url(relative, allow_local=True)
