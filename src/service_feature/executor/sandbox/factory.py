"""Choose the executor's sandbox from settings, once, at start-up; never run tests unisolated by accident.

`auto` prefers bubblewrap (a few milliseconds per run) over Docker (about half a second per container), and
fails with instructions rather than falling back to no isolation: running LLM-written code on the host must
be an explicit `SANDBOX_ENABLED=false`, and even then it is logged as a warning.
"""

from __future__ import annotations

import structlog

from service_feature.config import ExecutorSettings
from service_feature.executor.sandbox.base import Limits, Sandbox
from service_feature.executor.sandbox.bwrap import BwrapSandbox
from service_feature.executor.sandbox.docker import DockerSandbox
from service_feature.executor.sandbox.process import ProcessSandbox
from service_feature.executor.sandbox.userns import identity_for

_log = structlog.get_logger()

# Not in ExecutorSettings yet; read here with a default until it is.


class SandboxUnavailableError(RuntimeError):
    """The configured sandbox cannot run on this machine; the message tells the operator what to do."""


def limits_from_settings(settings: ExecutorSettings) -> Limits:
    """The run limits; warns when the disk quota cannot be reached (its tmpfs pages are memory too, so a run
    filling it would be killed by the memory limit first and reported as such)."""
    quota, memory = settings.sandbox_disk_quota_mb, settings.sandbox_memory_limit_mb
    if quota >= memory:
        _log.warning(
            "sandbox.disk_quota_above_memory_limit",
            disk_quota_mb=quota,
            memory_limit_mb=memory,
            consequence="a run filling its disk is killed by the memory limit, not told its disk is full",
        )
    return Limits(
        wall_seconds=settings.test_timeout_seconds,
        memory_mb=settings.sandbox_memory_limit_mb,
        output_bytes=settings.test_output_limit_bytes,
        disk_mb=settings.sandbox_disk_quota_mb,
    )


def create_sandbox(settings: ExecutorSettings, *, network: bool = False) -> Sandbox:
    """The sandbox SANDBOX_ENABLED/SANDBOX_TYPE ask for; `network=True` for a dependency-setup step."""
    if not settings.sandbox_enabled:
        _log.warning(
            "sandbox.disabled",
            consequence="tests written by the LLM run on the host with the executor's rights and secrets",
            requested_type=settings.sandbox_type,
        )
        return ProcessSandbox()
    kind = settings.sandbox_type
    if kind == "process":
        raise SandboxUnavailableError(
            "SANDBOX_TYPE=process runs tests without isolation; it needs SANDBOX_ENABLED=false explicitly"
        )
    host_uid = settings.sandbox_host_uid
    bwrap_error = BwrapSandbox.probe_error(host_uid=host_uid) if kind in ("auto", "bwrap") else None
    if kind == "bwrap" or (kind == "auto" and bwrap_error is None):
        if bwrap_error is not None:
            raise SandboxUnavailableError(
                f"SANDBOX_TYPE=bwrap but bubblewrap does not work here: {bwrap_error}"
            )
        sandbox = BwrapSandbox(
            network=network,
            identity=identity_for(host_uid),
            network_fallback=settings.sandbox_setup_network_fallback,
            allowed_hosts=settings.setup_allowed_hosts,
        )
        return _logged(sandbox)
    docker_error = DockerSandbox.probe_error()
    if docker_error is None:
        docker_sandbox = DockerSandbox(
            image=settings.sandbox_docker_image,
            network=network,
            network_fallback=settings.sandbox_setup_network_fallback,
        )
        return _logged(docker_sandbox)
    if kind == "docker":
        raise SandboxUnavailableError(f"SANDBOX_TYPE=docker but no Docker engine answers: {docker_error}")
    raise SandboxUnavailableError(
        "No sandbox is available: install bubblewrap (apt-get install bubblewrap) or make a Docker engine "
        "reachable, or run tests unisolated by setting SANDBOX_ENABLED=false explicitly. "
        f"bwrap: {bwrap_error}; docker: {docker_error}"
    )


def _logged(sandbox: BwrapSandbox | DockerSandbox) -> Sandbox:
    description = sandbox.describe()
    if description.get("degraded"):
        _log.warning("sandbox.degraded", **description)
    else:
        _log.info("sandbox.selected", **description)
    return sandbox
