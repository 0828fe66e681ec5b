"""Settings, one class per service, read from the environment with pydantic-settings.

Variable names follow the reference design (SERVICE_NAME, SERVER_ADDRESS, QUEUE_FEATURE_REQUEST_URI,
DATABASE_URL, …); the platform's own additions carry an `SF_` prefix only where the reference design had no
name for them. Every variable is documented in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service_feature.git import PushCredentials
from service_feature.logs import register_secrets
from service_feature.models import DeliveryMode, Language


class CommonSettings(BaseSettings):
    """What every service needs: where state lives, how to reach the bus, how to listen."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    service_name: str = Field("service_feature", alias="SERVICE_NAME")
    server_address: str = Field(":8080", alias="SERVER_ADDRESS")
    data_dir: Path = Field(Path(".service-feature"), alias="SF_DATA_DIR")
    database_url: str | None = Field(None, alias="DATABASE_URL")
    queue_feature_request_uri: str | None = Field(None, alias="QUEUE_FEATURE_REQUEST_URI")
    ack_wait_seconds: float = Field(30.0, alias="SF_ACK_WAIT_SECONDS", gt=0)
    max_deliver: int = Field(5, alias="SF_MAX_DELIVER", ge=2)
    shutdown_grace_seconds: float = Field(25.0, alias="SF_SHUTDOWN_GRACE_SECONDS", ge=0)
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["console", "json"] = Field("console", alias="LOG_FORMAT")
    workspace_base_path: Path | None = Field(None, alias="WORKSPACE_BASE_PATH")
    allow_local_repositories: bool = Field(False, alias="ALLOW_LOCAL_REPOSITORIES")
    git_timeout_seconds: float = Field(300.0, alias="SF_GIT_TIMEOUT_SECONDS", gt=0)
    repository_allowlist: str = Field("", alias="REPOSITORY_ALLOWLIST")
    max_repository_mb: int | None = Field(None, alias="SF_MAX_REPOSITORY_MB", ge=1)
    git_clone_depth: int | None = Field(None, alias="SF_GIT_CLONE_DEPTH", ge=1)
    admin_key: SecretStr | None = Field(None, alias="SF_ADMIN_KEY")

    def model_post_init(self, context: Any, /) -> None:
        """The settings' secrets never reach a log line (service_feature.logs)."""
        register_secrets(
            *(value.get_secret_value() for value in vars(self).values() if isinstance(value, SecretStr))
        )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: SQLite under the data dir unless DATABASE_URL names a server."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'service-feature.db'}"
        url = self.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
        return url

    @property
    def repository_hosts(self) -> tuple[str, ...]:
        """REPOSITORY_ALLOWLIST as host patterns (`github.com,*.corp.example`); empty: any public host."""
        return tuple(host.strip() for host in self.repository_allowlist.split(",") if host.strip())

    @property
    def admin_key_file(self) -> Path:
        """Where the embedded `up` leaves its admin API key (mode 0600) for local clients."""
        return self.data_dir / "admin.key"

    @property
    def workspaces(self) -> Path:
        """Checkouts live here; each service keeps its own subfolder, so none needs another's disk."""
        return (self.workspace_base_path or self.data_dir / "workspaces").expanduser().resolve()

    @property
    def nats_url(self) -> str | None:
        """The NATS server from QUEUE_FEATURE_REQUEST_URI (`nats://host:4222/feature.requests`), if any."""
        if not self.queue_feature_request_uri:
            return None
        parts = urlsplit(self.queue_feature_request_uri)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.server_address.rpartition(":")
        return (host or "0.0.0.0", int(port))  # noqa: S104 - a service listens on all interfaces by design


class GatewaySettings(CommonSettings):
    service_name: str = Field("feature_gateway", alias="SERVICE_NAME")
    max_page_size: int = Field(100, alias="SF_MAX_PAGE_SIZE", ge=1)
    submit_rate_per_minute: int = Field(30, alias="SF_SUBMIT_RATE_PER_MINUTE", ge=1)
    max_body_bytes: int = Field(1_000_000, alias="SF_MAX_BODY_BYTES", ge=1024)
    max_queued_per_key: int = Field(20, alias="SF_MAX_QUEUED_PER_KEY", ge=1)
    redis_url: str | None = Field(None, alias="REDIS_URL")
    # Forge webhooks (docs/delivery.md): a forge's route answers only when its secret is set.
    webhook_secret_github: SecretStr | None = Field(None, alias="SF_WEBHOOK_SECRET_GITHUB")
    webhook_secret_gitlab: SecretStr | None = Field(None, alias="SF_WEBHOOK_SECRET_GITLAB")
    webhook_secret_gitea: SecretStr | None = Field(None, alias="SF_WEBHOOK_SECRET_GITEA")
    webhook_label: str = Field("service-feature", alias="SF_WEBHOOK_LABEL", min_length=1)
    webhook_handle: str = Field("service-feature", alias="SF_WEBHOOK_HANDLE", min_length=1)
    # Who may trigger a feature: repository paths (`acme/*`) and forge logins (`*`: anyone); empty: nobody.
    webhook_repositories: str = Field("", alias="SF_WEBHOOK_REPOSITORIES")
    webhook_users: str = Field("", alias="SF_WEBHOOK_USERS")
    webhook_language: Language = Field(Language.python, alias="SF_WEBHOOK_LANGUAGE")

    def webhook_secret(self, forge: str) -> SecretStr | None:
        secret: SecretStr | None = getattr(self, f"webhook_secret_{forge}")
        return secret


class LLMSettings(CommonSettings):
    """The model a service talks to; the worker and the reviewer read the same variables.

    `llm.factory.provider_from_settings` turns them into a provider. The scripted provider replays a
    per-feature transcript for the agent, so `LLM_SCRIPT` is the worker's own.
    """

    llm_provider: Literal["scripted", "anthropic", "openai"] | None = Field(None, alias="LLM_PROVIDER")
    llm_model: str | None = Field(None, alias="LLM_MODEL")
    anthropic_api_key: SecretStr | None = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = Field(None, alias="ANTHROPIC_BASE_URL")
    openai_api_key: SecretStr | None = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, alias="OPENAI_BASE_URL")
    llm_max_tokens: int | None = Field(None, alias="LLM_MAX_TOKENS", ge=1)
    llm_timeout_seconds: float = Field(600.0, alias="LLM_TIMEOUT_SECONDS", gt=0)
    llm_max_attempts: int = Field(5, alias="LLM_MAX_ATTEMPTS", ge=1)
    llm_max_retry_wait_seconds: float = Field(60.0, alias="LLM_MAX_RETRY_WAIT_SECONDS", gt=0)
    llm_context_tokens: int = Field(200_000, alias="LLM_CONTEXT_TOKENS", ge=1000)

    @property
    def resolved_llm_provider(self) -> str:
        if self.llm_provider:
            return self.llm_provider
        return "anthropic" if self.anthropic_api_key else "scripted"


class WorkerSettings(LLMSettings):
    service_name: str = Field("feature_worker", alias="SERVICE_NAME")
    llm_script: Path | None = Field(None, alias="LLM_SCRIPT")
    max_attempts: int = Field(3, alias="MAX_ATTEMPTS", ge=1)
    worker_concurrency: int = Field(2, alias="SF_WORKER_CONCURRENCY", ge=1)
    max_agent_turns: int = Field(40, alias="MAX_AGENT_TURNS", ge=1)
    max_tokens_per_feature: int = Field(2_000_000, alias="MAX_TOKENS_PER_FEATURE", ge=1)
    max_cost_usd_per_feature: float = Field(5.0, alias="MAX_COST_USD_PER_FEATURE", gt=0)
    repo_map_tokens: int = Field(2_000, alias="REPO_MAP_TOKENS", ge=0)
    repo_instructions_tokens: int = Field(2_000, alias="SF_REPO_INSTRUCTIONS_TOKENS", ge=0)
    tool_timeout_seconds: float = Field(600.0, alias="SF_TOOL_TIMEOUT_SECONDS", gt=0)
    git_author_name: str = Field("Service Feature", alias="SF_GIT_AUTHOR_NAME")
    git_author_email: str = Field("service-feature@localhost", alias="SF_GIT_AUTHOR_EMAIL")
    git_committer_name: str | None = Field(None, alias="SF_GIT_COMMITTER_NAME")
    git_committer_email: str | None = Field(None, alias="SF_GIT_COMMITTER_EMAIL")
    # An SSH private key file: delivered commits are signed with it (git's gpg.format=ssh).
    git_signing_key: Path | None = Field(None, alias="SF_GIT_SIGNING_KEY")
    git_push_username: str = Field("x-access-token", alias="GIT_PUSH_USERNAME")
    git_push_token: SecretStr | None = Field(None, alias="GIT_PUSH_TOKEN")
    delivery_mode: DeliveryMode = Field(DeliveryMode.branch, alias="DELIVERY_MODE")
    # Where people open the platform (the gateway's URL): pull requests link to the feature's transcript.
    public_url: str | None = Field(None, alias="SF_PUBLIC_URL")
    github_token: SecretStr | None = Field(None, alias="GITHUB_TOKEN")
    github_api_url: str = Field("https://api.github.com", alias="GITHUB_API_URL")
    gitlab_token: SecretStr | None = Field(None, alias="GITLAB_TOKEN")
    gitlab_url: str = Field("https://gitlab.com", alias="GITLAB_URL")
    gitea_token: SecretStr | None = Field(None, alias="GITEA_TOKEN")
    gitea_url: str | None = Field(None, alias="GITEA_URL")
    # More forge accounts, one per repository host: [{"kind", "host", "api_url", "token"}] (docs/delivery.md).
    forges_json: SecretStr | None = Field(None, alias="SF_FORGES_JSON")
    # MCP tool servers for the agent: [{"name", "command", "args", "env", "trusted"}] (worker/mcp_tools.py)
    mcp_servers_json: SecretStr | None = Field(None, alias="SF_MCP_SERVERS_JSON")

    @property
    def push_credentials(self) -> PushCredentials | None:
        if self.git_push_token is None:
            return None
        return PushCredentials(self.git_push_username, self.git_push_token.get_secret_value())


class ReviewerSettings(LLMSettings):
    service_name: str = Field("feature_reviewer", alias="SERVICE_NAME")
    max_risk_score: int = Field(50, alias="MAX_RISK_SCORE", ge=0, le=100)
    max_critical_issues: int = Field(0, alias="MAX_CRITICAL_ISSUES", ge=0)
    block_on_secrets: bool = Field(True, alias="BLOCK_ON_SECRETS")
    max_changed_lines: int = Field(2000, alias="SF_REVIEW_MAX_CHANGED_LINES", ge=1)
    llm_review: bool = Field(True, alias="LLM_REVIEW")

    @property
    def model_review_enabled(self) -> bool:
        """A model reviews the diff when a real provider (not scripted) is configured and LLM_REVIEW is on."""
        return self.llm_review and self.resolved_llm_provider != "scripted"


class ExecutorSettings(CommonSettings):
    service_name: str = Field("feature_executor", alias="SERVICE_NAME")
    sandbox_enabled: bool = Field(True, alias="SANDBOX_ENABLED")
    sandbox_docker_image: str = Field("python:3.11-slim", alias="SANDBOX_DOCKER_IMAGE")
    sandbox_type: Literal["auto", "bwrap", "docker", "process"] = Field("auto", alias="SANDBOX_TYPE")
    sandbox_memory_limit_mb: int = Field(2048, alias="SANDBOX_MEMORY_LIMIT_MB", ge=64)
    # The host uid (and gid) bwrap sandboxes run as when the executor is root; 0 means root, on purpose only.
    sandbox_host_uid: int = Field(65534, alias="SANDBOX_HOST_UID", ge=0, lt=2**32 - 1)
    max_concurrent_executions: int = Field(5, alias="MAX_CONCURRENT_EXECUTIONS", ge=1)
    test_timeout_seconds: float = Field(600.0, alias="SF_TEST_TIMEOUT_SECONDS", gt=0)
    test_output_limit_bytes: int = Field(1_000_000, alias="SF_TEST_OUTPUT_LIMIT_BYTES", ge=1024)
    allow_dependency_changes: bool = Field(False, alias="SF_ALLOW_DEPENDENCY_CHANGES")
    # One total for what a test run may write (workspace, /tmp, /dev/shm; a tmpfs, so memory too); 0: none.
    sandbox_disk_quota_mb: int = Field(1024, alias="SANDBOX_DISK_QUOTA_MB", ge=0)
    # Without pasta (Debian package passt), setup gets no network ("refuse") or the host's ("host", unsafe).
    sandbox_setup_network_fallback: Literal["refuse", "host"] = Field(
        "refuse", alias="SANDBOX_SETUP_NETWORK_FALLBACK"
    )
    # Host patterns setup's proxy lets through (`pypi.org,*.pythonhosted.org`); empty: any public host.
    sandbox_setup_allowed_hosts: str = Field("", alias="SANDBOX_SETUP_ALLOWED_HOSTS")

    @property
    def setup_allowed_hosts(self) -> tuple[str, ...]:
        return tuple(host.strip() for host in self.sandbox_setup_allowed_hosts.split(",") if host.strip())
