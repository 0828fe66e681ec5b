#!/usr/bin/env bash
# One Procfile process: `local-service.sh <service>` with $PORT set by honcho (see Procfile).
# Writes $SF_LOCAL_RUN/<service>-<port>.pid (the pid stays the service's: we exec), gives the instance
# a workspace folder of its own (two worker processes must not clone into the same mirror at once), and
# execs the service so it receives SIGTERM directly.
set -euo pipefail
service="${1:?usage: local-service.sh gateway|worker|reviewer|executor}"
port="${PORT:?PORT is set by honcho}"
run="${SF_LOCAL_RUN:-.service-feature/local/run}"
mkdir -p "$run"
echo $$ >"$run/$service-$port.pid"
export WORKSPACE_BASE_PATH="${SF_LOCAL_WORKSPACES:-${SF_DATA_DIR:-.service-feature/local}/workspaces}/$service-$port"
export SERVICE_NAME="${SERVICE_NAME:-feature_$service}"
exec "${SF_BIN:-.venv/bin}/service-feature" "$service" --port "$port"
