"""No credential reaches a log line: the settings' secrets and secret-looking text are masked."""

import pytest
import structlog

from service_feature import logs
from service_feature.config import GatewaySettings, WorkerSettings
from service_feature.logs import configure_logging, register_secrets

FORGE_TOKEN = "gitea-0123456789abcdef0123456789"
WEBHOOK_SECRET = "hook-secret-9876543210"


def _masked(**fields: object) -> dict[str, object]:
    return dict(logs._mask_event(None, "warning", {"event": "something.failed", **fields}))


def test_the_settings_secrets_are_masked_wherever_they_appear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITEA_TOKEN", FORGE_TOKEN)
    monkeypatch.setenv("SF_WEBHOOK_SECRET_GITHUB", WEBHOOK_SECRET)
    WorkerSettings()
    GatewaySettings()
    record = _masked(
        error=f"push to https://git.example/acme/app failed: token {FORGE_TOKEN} refused",
        detail={"secret": WEBHOOK_SECRET},
        attempt=3,
    )
    assert record["error"] == "push to https://git.example/acme/app failed: token [REDACTED] refused"
    assert WEBHOOK_SECRET not in str(record["detail"])
    assert record["attempt"] == 3  # numbers stay numbers


def test_secret_looking_text_and_tracebacks_are_masked() -> None:
    register_secrets("short")  # too short to mask ordinary words with: ignored
    record = _masked(
        exception="RuntimeError: https://user:hunter2hunter2@example.com with Bearer abcdefghijklmnop1234",
        note="a short word",
    )
    assert "hunter2hunter2" not in str(record["exception"])
    assert "abcdefghijklmnop1234" not in str(record["exception"])
    assert record["note"] == "a short word"


def test_the_masking_runs_after_tracebacks_become_text_and_before_rendering() -> None:
    configure_logging("INFO", "json")
    processors = structlog.get_config()["processors"]
    order = [getattr(p, "__name__", type(p).__name__) for p in processors]
    assert order.index("_mask_event") == len(order) - 2  # just before the renderer
    assert order.index("_mask_event") > order.index("ExceptionRenderer")
