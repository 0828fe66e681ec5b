# syntax=docker/dockerfile:1
# One image for every service; the command picks the service:
#   docker run service-feature gateway|worker|reviewer|executor|db upgrade|up
# Per-service targets (gateway, worker, reviewer, executor) only change the default command, so all of
# them share every layer:  docker build --target worker -t service-feature-worker .
#
# Executor sandbox (read before deploying the executor container):
#   * SANDBOX_TYPE=docker: mount the host's Docker socket (-v /var/run/docker.sock:/var/run/docker.sock)
#     and give the process access to it (group_add the socket's GID, or run as root). The sandbox
#     bind-mounts each test workspace into a sibling container BY HOST PATH, so WORKSPACE_BASE_PATH must be
#     a bind mount whose path is the same inside the container and on the host. Whoever holds the socket
#     is root on the host: run only the executor this way.
#   * SANDBOX_TYPE=bwrap (bubblewrap is installed below): bwrap creates user, PID and mount namespaces
#     and mounts a fresh /proc. Docker's default seccomp/AppArmor profiles and its masked /proc paths
#     forbid that, so the container needs `--security-opt seccomp=unconfined --security-opt
#     apparmor=unconfined --security-opt systempaths=unconfined` (docker run) or `privileged: true`
#     (compose cannot express systempaths), and a host kernel that allows unprivileged user namespaces.
#     The executor checks this at start-up and exits with the reason if bwrap cannot work.

ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9
# The toolchains the executor tests repositories with, from Debian (bookworm: Go 1.19, Node 18 + npm 9,
# Rust 1.63); Python is the image's own, venv included. yarn and pnpm are not here: setup installs the
# version a repository pins from the npm registry. Build with an empty value for an image without them: the
# executor then logs at start-up which languages it cannot test.
ARG EXECUTOR_TOOLCHAINS="golang-go nodejs npm cargo rustc"

# —— builder: uv installs the locked dependencies and the project into /opt/venv ——————————————————
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG UV_VERSION
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY src ./src
# --no-editable: the venv holds a real install of the project, /src is not needed at run time.
RUN uv sync --frozen --no-dev --no-editable
# semgrep, for the reviewer's rules, in an environment of its own (its pins clash with the project's).
ARG SEMGREP_VERSION=1.185.0
RUN UV_TOOL_DIR=/opt/semgrep/tools UV_TOOL_BIN_DIR=/opt/semgrep/bin \
    uv tool install --python /usr/local/bin/python3 "semgrep==${SEMGREP_VERSION}"

# —— runtime: slim Python + git + bubblewrap + passt + the executor's toolchains, non-root ————————————————
# passt provides `pasta`: a setup run's sandbox gets a network namespace of its own, joined to the host by
# pasta for one port only, the executor's egress proxy (executor/sandbox/netns.py).
# Same base image as the builder, so the venv's python symlink (/usr/local/bin/python3) resolves. Every
# service's image shares these layers, so the toolchains are stored once, not once per service.
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG EXECUTOR_TOOLCHAINS
# Unpinned on purpose: Debian stable only ships security fixes, and a pinned version disappears from the
# mirror once it is superseded, breaking the build.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git bubblewrap passt ca-certificates \
      ${EXECUTOR_TOOLCHAINS} \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 feature \
 && useradd --system --uid 10001 --gid feature --home-dir /var/lib/feature-service --create-home \
      --shell /usr/sbin/nologin feature \
 && mkdir -p /var/lib/feature-service/workspaces \
 && chown -R feature:feature /var/lib/feature-service
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/semgrep /opt/semgrep
COPY scripts/healthcheck.py /usr/local/bin/sf-healthcheck
ENV PATH=/opt/venv/bin:/opt/semgrep/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVER_ADDRESS=:8080 \
    SF_DATA_DIR=/var/lib/feature-service \
    WORKSPACE_BASE_PATH=/var/lib/feature-service/workspaces \
    LOG_FORMAT=json
WORKDIR /var/lib/feature-service
USER 10001:10001
EXPOSE 8080
# GET /health on the port of SERVER_ADDRESS (python's urllib: no curl in the image).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/sf-healthcheck"]
# SIGTERM drains: stop fetching, finish (or leave for redelivery) in-flight work, flush the outbox, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["service-feature"]
CMD ["gateway"]

# —— one target per service: only the default command differs ————————————————————————————————————
FROM runtime AS gateway
CMD ["gateway"]

FROM runtime AS worker
CMD ["worker"]

FROM runtime AS reviewer
CMD ["reviewer"]

FROM runtime AS executor
CMD ["executor"]

# —— sandbox: the image SANDBOX_TYPE=docker runs each test in (SANDBOX_DOCKER_IMAGE) ——————————————————————
# The runtime's layers, so the same toolchains and interpreter paths as the executor, without the service's
# entrypoint (the sandbox passes the test command) and healthcheck, as the sandbox's unprivileged user.
FROM runtime AS sandbox
ENTRYPOINT []
CMD ["bash"]
HEALTHCHECK NONE
USER 65534:65534

# `docker build .` without --target: the generic image (gateway by default, any service by command).
FROM runtime AS default
