"""Which sandbox the settings select, and that no path leads to running tests unisolated by accident."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from service_feature.config import ExecutorSettings
from service_feature.executor.sandbox import bwrap as bwrap_module
from service_feature.executor.sandbox import factory
from service_feature.executor.sandbox.base import Limits
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.sandbox.cgroups import CgroupSupport
from service_feature.executor.sandbox.docker import DockerSandbox
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.sandbox.userns import Identity, UserNamespaceError


class FakeBwrap(BwrapSandbox):
    error: str | None = None

    def __init__(self, *, network: bool = False, identity: Identity | None = None, **options: Any) -> None:
        super().__init__(
            network=network,
            cgroup_support=CgroupSupport(memory=None, pids=None, kill_parent=None),
            identity=identity,
            **options,
        )

    @staticmethod
    def probe_error(bwrap: str = "bwrap", host_uid: int = 65534) -> str | None:
        return FakeBwrap.error


class FakeDocker(DockerSandbox):
    error: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(client=object(), **kwargs)

    @staticmethod
    def probe_error() -> str | None:
        return FakeDocker.error


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> type[object]:
    """Both backends answer unless a test sets `FakeBwrap.error` / `FakeDocker.error`."""
    monkeypatch.setattr(factory, "BwrapSandbox", FakeBwrap)
    monkeypatch.setattr(factory, "DockerSandbox", FakeDocker)
    monkeypatch.setattr(factory, "identity_for", lambda uid: Identity(host_uid=uid, host_gid=uid))
    monkeypatch.setattr(FakeBwrap, "error", None)
    monkeypatch.setattr(FakeDocker, "error", None)
    return object


def settings(**values: Any) -> ExecutorSettings:
    return ExecutorSettings.model_validate({"SANDBOX_ENABLED": True, "SANDBOX_TYPE": "auto", **values})


def test_disabled_sandbox_is_the_plain_runner_with_a_warning(machine: type[object]) -> None:
    with capture_logs() as logs:
        sandbox = factory.create_sandbox(settings(SANDBOX_ENABLED=False))

    assert isinstance(sandbox, ProcessSandbox)
    assert [log["log_level"] for log in logs if log["event"] == "sandbox.disabled"] == ["warning"]


def test_process_type_needs_the_sandbox_disabled(machine: type[object]) -> None:
    with pytest.raises(factory.SandboxUnavailableError, match="SANDBOX_ENABLED=false"):
        factory.create_sandbox(settings(SANDBOX_TYPE="process"))


@pytest.mark.parametrize("network", [False, True])
def test_auto_prefers_bwrap(machine: type[object], network: bool) -> None:
    sandbox = factory.create_sandbox(settings(), network=network)

    assert isinstance(sandbox, FakeBwrap)
    assert sandbox.network is network


def test_auto_falls_back_to_docker(machine: type[object]) -> None:
    FakeBwrap.error = "bwrap is not on PATH"

    sandbox = factory.create_sandbox(settings(), network=True)

    assert isinstance(sandbox, FakeDocker)
    assert sandbox.network is True


def test_auto_without_any_sandbox_tells_the_operator_what_to_do(machine: type[object]) -> None:
    FakeBwrap.error = "bwrap is not on PATH"
    FakeDocker.error = "no engine"

    with pytest.raises(factory.SandboxUnavailableError) as raised:
        factory.create_sandbox(settings())

    message = str(raised.value)
    assert "install bubblewrap" in message
    assert "SANDBOX_ENABLED=false" in message
    assert "bwrap is not on PATH" in message


@pytest.mark.parametrize(("kind", "expected"), [("bwrap", FakeBwrap), ("docker", FakeDocker)])
def test_explicit_type_is_honoured(machine: type[object], kind: str, expected: type[object]) -> None:
    assert isinstance(factory.create_sandbox(settings(SANDBOX_TYPE=kind)), expected)


def test_explicit_bwrap_never_falls_back(machine: type[object]) -> None:
    FakeBwrap.error = "userns disabled"

    with pytest.raises(factory.SandboxUnavailableError, match="userns disabled"):
        factory.create_sandbox(settings(SANDBOX_TYPE="bwrap"))


def test_explicit_docker_without_engine_fails(machine: type[object]) -> None:
    FakeDocker.error = "connection refused"

    with pytest.raises(factory.SandboxUnavailableError, match="connection refused"):
        factory.create_sandbox(settings(SANDBOX_TYPE="docker"))


def test_degraded_bwrap_is_logged_as_a_warning(machine: type[object]) -> None:
    with capture_logs() as logs:
        factory.create_sandbox(settings())

    degraded = [log for log in logs if log["event"] == "sandbox.degraded"]
    assert degraded[0]["log_level"] == "warning"
    assert degraded[0]["degraded"][:3] == ["memory", "pids", "cgroup.kill"]


def test_sandbox_runs_as_the_configured_host_uid(machine: type[object]) -> None:
    sandbox = factory.create_sandbox(settings(SANDBOX_HOST_UID=4242))

    assert isinstance(sandbox, FakeBwrap)
    assert sandbox.describe()["host_uid"] == 4242


def test_host_root_sandbox_is_degraded(machine: type[object]) -> None:
    with capture_logs() as logs:
        factory.create_sandbox(settings(SANDBOX_HOST_UID=0))

    degraded = [log for log in logs if log["event"] == "sandbox.degraded"]
    assert "host-root" in degraded[0]["degraded"]


def test_limits_follow_the_settings() -> None:
    limits = factory.limits_from_settings(
        settings(SANDBOX_MEMORY_LIMIT_MB=512, SF_TEST_TIMEOUT_SECONDS=42, SF_TEST_OUTPUT_LIMIT_BYTES=4096)
    )

    assert (limits.memory_mb, limits.wall_seconds, limits.output_bytes) == (512, 42, 4096)
    assert (limits.pids, limits.cpu_seconds) == (Limits().pids, Limits().cpu_seconds)


def test_without_an_unprivileged_identity_bwrap_is_unavailable_with_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(uid: int) -> Identity:
        raise UserNamespaceError(f"uid {uid} could not create a user namespace: Operation not permitted")

    monkeypatch.setattr(bwrap_module, "identity_for", refuse)

    error = BwrapSandbox.probe_error(bwrap="true", host_uid=4242)

    assert error is not None
    assert "uid 4242 could not create a user namespace" in error
    assert "SANDBOX_HOST_UID=0" in error


def test_disk_quota_setting_reaches_the_limits() -> None:
    with capture_logs() as logs:
        assert factory.limits_from_settings(settings(SANDBOX_DISK_QUOTA_MB=300)).disk_mb == 300
        assert factory.limits_from_settings(settings()).disk_mb == 1024
        assert not logs
        factory.limits_from_settings(settings(SANDBOX_DISK_QUOTA_MB=512, SANDBOX_MEMORY_LIMIT_MB=256))

    assert [log["event"] for log in logs] == ["sandbox.disk_quota_above_memory_limit"]


def test_setup_network_settings_reach_the_sandbox(
    machine: type[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pasta, SANDBOX_SETUP_NETWORK_FALLBACK picks "refuse" (the default) or "host", both logged."""
    monkeypatch.setattr(bwrap_module.netns, "pasta_path", lambda: None)
    monkeypatch.setattr(bwrap_module, "_warned", set())

    with capture_logs() as logs:
        refused = factory.create_sandbox(settings(), network=True)
        factory.create_sandbox(settings(), network=True)  # a second setup sandbox: not logged again
        shared = factory.create_sandbox(settings(SANDBOX_SETUP_NETWORK_FALLBACK="host"), network=True)

    assert isinstance(refused, FakeBwrap)
    assert isinstance(shared, FakeBwrap)
    assert (refused.egress, shared.egress) == ("refused", "host")
    assert "setup-network-refused" in refused.describe()["degraded"]
    assert "setup-network-host" in shared.describe()["degraded"]
    warnings = [log for log in logs if log["event"] == "sandbox.setup_network_degraded"]
    assert [log["fallback"] for log in warnings] == ["refuse", "host"]


def test_setup_network_uses_pasta_and_the_allow_list_when_present(
    machine: type[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bwrap_module.netns, "pasta_path", lambda: "/usr/bin/pasta")

    sandbox = factory.create_sandbox(
        settings(SANDBOX_SETUP_ALLOWED_HOSTS=" pypi.org, *.pythonhosted.org ,"), network=True
    )
    tests_sandbox = factory.create_sandbox(settings())

    assert isinstance(sandbox, FakeBwrap)
    assert sandbox.egress == "proxy"
    assert sandbox.with_readonly([]).egress == "proxy"
    assert sandbox._allowed_hosts == ("pypi.org", "*.pythonhosted.org")
    assert isinstance(tests_sandbox, FakeBwrap)
    assert tests_sandbox.egress == "none"
