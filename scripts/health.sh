#!/usr/bin/env bash
# `make health`: GET /health of the gateway (required), then of every other service that is reachable
# from here: the processes of `make up-local`, and the compose containers' health state when a Docker
# engine answers. Exit status: the gateway's.
set -uo pipefail
cd "$(dirname "$0")/.."
GATEWAY_URL="${GATEWAY_URL:-http://127.0.0.1:8080}"
RUN="${SF_LOCAL_RUN:-${SF_DATA_DIR:-.service-feature/local}/run}"

printf '%-28s ' "gateway $GATEWAY_URL"
if body="$(curl -fsS --max-time 3 "$GATEWAY_URL/health")"; then
  echo "$body"; status=0
else
  echo "UNREACHABLE"; status=1
fi

for file in "$RUN"/*-*.pid; do
  [ -e "$file" ] || continue
  name="$(basename "$file" .pid)"
  port="${name##*-}"
  [ "http://127.0.0.1:$port" = "$GATEWAY_URL" ] && continue
  printf '%-28s ' "${name%-*} :$port (local)"
  curl -fsS --max-time 3 "http://127.0.0.1:$port/health" || printf 'UNREACHABLE'
  echo
done

if docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  docker compose ps --format 'table {{.Service}}\t{{.Name}}\t{{.Status}}'
fi
exit "$status"
