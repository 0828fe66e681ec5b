"""What the adapters do when the forge fails: retry what may pass, name what the operator must fix, and keep
the token out of every message and log line."""

from __future__ import annotations

import logging
import socket
import time
import traceback

import pytest
import structlog

from service_feature.forges.base import (
    Forge,
    ForgeAuthError,
    ForgeError,
    ForgeKind,
    ForgeRefused,
    ForgeUnavailable,
    PullRequestDraft,
)
from service_feature.forges.registry import ForgeAccount, RetryPolicy, open_forge
from tests.integration.forges.conftest import POLICY, RecordedSleeps
from tests.support.forges import ForgeServer, GitHubServer

DRAFT = PullRequestDraft(head="feature/greeting", base="main", title="Add a greeting", body="", draft=False)


def error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


async def test_5xx_is_retried_and_one_pull_request_is_opened(
    server: ForgeServer, forge: Forge, repository: str, sleeps: RecordedSleeps
) -> None:
    server.fail_next(502, times=2)

    opened = await forge.open_pull_request(repository, DRAFT)

    assert opened.number == 1
    assert len(server.pull_requests(repository)) == 1
    assert len(sleeps.waits) == 2
    # exponential with jitter: half the step fixed
    assert POLICY.initial_wait / 2 <= sleeps.waits[0] <= POLICY.initial_wait
    assert POLICY.initial_wait <= sleeps.waits[1] <= 2 * POLICY.initial_wait


async def test_a_failed_create_is_retried_without_a_duplicate(
    server: ForgeServer, forge: Forge, repository: str, sleeps: RecordedSleeps
) -> None:
    server.fail_next(503, method="POST", path=r"/(pulls|merge_requests)$")

    await forge.open_pull_request(repository, DRAFT)

    assert len(server.pull_requests(repository)) == 1
    assert len(sleeps.waits) == 1


async def test_429_waits_as_long_as_retry_after_says(
    server: ForgeServer, forge: Forge, repository: str, sleeps: RecordedSleeps
) -> None:
    server.fail_next(429, retry_after=7)

    await forge.open_pull_request(repository, DRAFT)

    assert sleeps.waits == [7.0]


async def test_github_rate_limit_waits_until_the_reset(sleeps: RecordedSleeps) -> None:
    async with GitHubServer() as server:
        server.add_repository("acme/app")
        server.rate_limit_next(reset_in=30)
        forge = open_forge(server.account(), policy=POLICY, sleep=sleeps)
        try:
            await forge.open_pull_request("acme/app", DRAFT)
        finally:
            await forge.aclose()
    [wait] = sleeps.waits
    assert 25 <= wait <= 31  # reset is whole seconds of wall-clock time


async def test_a_wait_longer_than_the_cap_is_handed_back(
    server: ForgeServer, repository: str, sleeps: RecordedSleeps
) -> None:
    server.fail_next(429, retry_after=3600)
    forge = open_forge(server.account(), policy=RetryPolicy(max_wait=60), sleep=sleeps)
    try:
        with pytest.raises(ForgeUnavailable) as caught:
            await forge.find_pull_request(repository, "feature/greeting")
    finally:
        await forge.aclose()
    assert caught.value.retry_after == 3600
    assert caught.value.status == 429
    assert sleeps.waits == []


async def test_persistent_5xx_is_unavailable_after_the_attempts(
    server: ForgeServer, forge: Forge, repository: str, sleeps: RecordedSleeps
) -> None:
    server.fail_next(503, times=100)

    with pytest.raises(ForgeUnavailable) as caught:
        await forge.open_pull_request(repository, DRAFT)

    assert caught.value.status == 503
    assert len(server.requests) == POLICY.max_attempts
    assert len(sleeps.waits) == POLICY.max_attempts - 1
    assert str(server.kind) in str(caught.value)
    assert server.api_url.removesuffix("/api/v3") in str(caught.value)


async def test_a_refused_connection_is_unavailable(sleeps: RecordedSleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there
    for kind in ForgeKind:
        account = ForgeAccount(kind, f"http://127.0.0.1:{port}", "secret-token-xyz", "FORGE_TOKEN", "h")
        forge = open_forge(account, policy=RetryPolicy(max_attempts=2, initial_wait=0.01), sleep=sleeps)
        try:
            with pytest.raises(ForgeUnavailable) as caught:
                await forge.find_pull_request("acme/app", "x")
        finally:
            await forge.aclose()
        assert caught.value.status is None
        assert "no response" in str(caught.value)
        assert "secret-token-xyz" not in error_text(caught.value)


async def test_a_wrong_token_is_an_auth_error_naming_the_setting(
    server: ForgeServer, repository: str, sleeps: RecordedSleeps, caplog: pytest.LogCaptureFixture
) -> None:
    token = "wrong-token-4f9c2e"
    account = server.account(token=token, token_setting="FORGE_PROD_TOKEN")
    forge = open_forge(account, policy=POLICY, sleep=sleeps)
    caplog.set_level(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as logs, pytest.raises(ForgeAuthError) as caught:
            await forge.open_pull_request(repository, DRAFT)
    finally:
        await forge.aclose()

    message = str(caught.value)
    assert "FORGE_PROD_TOKEN" in message
    assert str(server.kind) in message
    assert account.api_url.rstrip("/").removesuffix("/api/v4") in message
    assert caught.value.status == 401
    assert sleeps.waits == [], "a wrong token is not retried"
    assert token not in error_text(caught.value)
    assert token not in repr(account)
    assert token not in repr(forge)
    assert token not in caplog.text
    assert token not in repr(logs)


async def test_a_forced_401_is_an_auth_error(server: ForgeServer, forge: Forge, repository: str) -> None:
    server.fail_next(401)

    with pytest.raises(ForgeAuthError):
        await forge.find_pull_request(repository, "feature/greeting")


async def test_the_token_stays_out_of_logs_while_retrying(
    server: ForgeServer, repository: str, sleeps: RecordedSleeps, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail_next(500, times=10)
    forge = open_forge(server.account(), policy=POLICY, sleep=sleeps)
    caplog.set_level(logging.DEBUG)
    try:
        with structlog.testing.capture_logs() as logs, pytest.raises(ForgeUnavailable) as caught:
            await forge.find_pull_request(repository, "feature/greeting")
    finally:
        await forge.aclose()

    assert [entry["event"] for entry in logs] == ["forge.retry"] * (POLICY.max_attempts - 1)
    assert server.token not in repr(logs)
    assert server.token not in caplog.text
    assert server.token not in error_text(caught.value)
    assert all(server.token not in str(r.headers) for r in server.requests)


async def test_an_unknown_repository_is_refused(
    server: ForgeServer, forge: Forge, sleeps: RecordedSleeps
) -> None:
    with pytest.raises(ForgeRefused) as caught:
        await forge.open_pull_request("acme/missing", DRAFT)

    assert caught.value.status == 404
    assert sleeps.waits == []
    assert isinstance(caught.value, ForgeError)


RESET_HEADERS = {
    ForgeKind.github: "x-ratelimit-reset",
    ForgeKind.gitlab: "RateLimit-Reset",
    ForgeKind.gitea: "X-RateLimit-Reset",
}


async def test_429_without_retry_after_waits_for_the_reset(
    server: ForgeServer, forge: Forge, repository: str, sleeps: RecordedSleeps
) -> None:
    server.fail_next(429, headers={RESET_HEADERS[server.kind]: str(int(time.time() + 20))})

    await forge.find_pull_request(repository, "feature/greeting")

    [wait] = sleeps.waits
    assert 15 <= wait <= 21  # whole seconds of wall-clock time


async def test_a_403_that_is_no_rate_limit_is_an_auth_error(
    server: ForgeServer, forge: Forge, repository: str, sleeps: RecordedSleeps
) -> None:
    server.fail_next(403, message="Resource not accessible by integration")

    with pytest.raises(ForgeAuthError) as caught:
        await forge.find_pull_request(repository, "feature/greeting")

    assert "Resource not accessible by integration" in str(caught.value)
    assert server.token_setting in str(caught.value)
    assert sleeps.waits == []
