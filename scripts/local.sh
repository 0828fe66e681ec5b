#!/usr/bin/env bash
# Every service as its own OS process against the machine's PostgreSQL and NATS, under honcho.
#
#   scripts/local.sh up [WORKERS]   create the database if missing, migrate, start honcho in the background,
#                                   wait until every process answers /health
#   scripts/local.sh down           SIGTERM every service (they drain), wait up to SF_LOCAL_GRACE seconds,
#                                   then stop honcho
#   scripts/local.sh scale N        restart the formation with N worker processes
#   scripts/local.sh status         pids, ports and /health of every process
#   scripts/local.sh logs           follow honcho's combined log
#
# Environment (all optional): DATABASE_URL (postgres://postgres@127.0.0.1:5432/service_feature),
# QUEUE_FEATURE_REQUEST_URI (nats://127.0.0.1:4222/feature.requests), SF_LOCAL_PORT (8080, the gateway;
# honcho adds 100 per process type), SF_LOCAL_GRACE (60), HONCHO (the honcho command), SF_BIN (.venv/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/service_feature}"
export QUEUE_FEATURE_REQUEST_URI="${QUEUE_FEATURE_REQUEST_URI:-nats://127.0.0.1:4222/feature.requests}"
export SF_DATA_DIR="${SF_DATA_DIR:-.service-feature/local}"
export SF_LOCAL_RUN="${SF_LOCAL_RUN:-$SF_DATA_DIR/run}"
export SF_BIN="${SF_BIN:-.venv/bin}"
# A developer's machine: local paths and file:// repositories are accepted, as with `service-feature up`.
export ALLOW_LOCAL_REPOSITORIES="${ALLOW_LOCAL_REPOSITORIES:-true}"
PORT_BASE="${SF_LOCAL_PORT:-8080}"
GRACE="${SF_LOCAL_GRACE:-60}"
HONCHO_PID="$SF_LOCAL_RUN/honcho.pid"
LOG="$SF_DATA_DIR/honcho.log"

say() { printf '\033[1m%s\033[0m\n' "$*"; }
die() { printf 'local: %s\n' "$*" >&2; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
honcho_pid() { cat "$HONCHO_PID" 2>/dev/null || true; }

honcho_command() {
  if [ -n "${HONCHO:-}" ]; then echo "$HONCHO"; return; fi
  if [ -x "$SF_BIN/honcho" ]; then echo "$SF_BIN/honcho"; return; fi
  if command -v honcho >/dev/null; then command -v honcho; return; fi
  for uv in .tools/bin/uv "$(command -v uv || true)"; do
    if [ -n "$uv" ] && [ -x "$uv" ]; then echo "$uv tool run --from honcho==2.0.0 honcho"; return; fi
  done
  die "honcho is not installed: add it to the dev dependencies (honcho>=2.0), or set HONCHO=/path/to/honcho"
}

nats_reachable() {
  local hostport="${QUEUE_FEATURE_REQUEST_URI#*://}"
  hostport="${hostport%%/*}"
  local host="${hostport%:*}" port="${hostport##*:}"
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# "service port pid" for every recorded process.
processes() {
  local file base
  for file in "$SF_LOCAL_RUN"/*-*.pid; do
    [ -e "$file" ] || continue
    base="$(basename "$file" .pid)"
    echo "${base%-*} ${base##*-} $(cat "$file")"
  done
}

any_alive() {
  local service port pid
  while read -r service port pid; do alive "$pid" && return 0; done < <(processes)
  return 1
}

health_of() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" 2>/dev/null; }

wait_healthy() {
  local deadline=$((SECONDS + ${1:-90})) expected="$2" service port pid healthy
  while :; do
    healthy=0
    while read -r service port pid; do
      if alive "$pid" && health_of "$port" >/dev/null; then healthy=$((healthy + 1)); fi
    done < <(processes)
    [ "$healthy" -ge "$expected" ] && return 0
    alive "$(honcho_pid)" || { tail -n 40 "$LOG" >&2; die "honcho exited; its log is above ($LOG)"; }
    [ "$SECONDS" -ge "$deadline" ] && { tail -n 40 "$LOG" >&2; die "$healthy of $expected processes healthy after waiting; log: $LOG"; }
    sleep 1
  done
}

up() {
  local workers="${1:-1}"
  [[ "$workers" =~ ^[1-9][0-9]*$ ]] || die "worker count must be a positive integer, got '$workers'"
  alive "$(honcho_pid)" && die "already running (honcho pid $(honcho_pid)); make down-local first"
  local honcho
  honcho="$(honcho_command)"
  mkdir -p "$SF_LOCAL_RUN"
  rm -f "$SF_LOCAL_RUN"/*.pid
  nats_reachable || die "NATS does not answer at $QUEUE_FEATURE_REQUEST_URI (start nats-server -js, or set QUEUE_FEATURE_REQUEST_URI)"
  case "$DATABASE_URL" in
    postgres://* | postgresql://*) "$SF_BIN/python" scripts/ensure_database.py "$DATABASE_URL" ;;
  esac
  say "migrating ${DATABASE_URL##*@}"
  "$SF_BIN/service-feature" db upgrade
  say "starting gateway, $workers worker(s), reviewer, executor (honcho; log: $LOG)"
  # setsid: the formation outlives this shell and make; its pid is recorded for `down`.
  # shellcheck disable=SC2086 # $honcho may be "uv tool run --from honcho==… honcho"
  setsid $honcho start -f Procfile -d . -p "$PORT_BASE" -c "worker=$workers" >"$LOG" 2>&1 </dev/null &
  echo $! >"$HONCHO_PID"
  wait_healthy 120 $((workers + 3))
  status
}

down() {
  local pid service port waited=0 honcho
  honcho="$(honcho_pid)"
  if ! alive "$honcho" && ! any_alive; then
    echo "not running"
    rm -f "$SF_LOCAL_RUN"/*.pid
    return 0
  fi
  # Pause honcho while the services drain. Left alone it would, as soon as the first service exits,
  # SIGTERM the other services' whole process groups (their git and sandbox children included) and
  # SIGKILL them 5 s later. Its per-process helpers keep reaping the services meanwhile.
  alive "$honcho" && kill -STOP "$honcho"
  # Each service by its own pid: it stops fetching, finishes (or leaves for redelivery) its in-flight
  # work within SF_ACK_WAIT_SECONDS, flushes the outbox and exits.
  while read -r service port pid; do
    alive "$pid" && kill -TERM "$pid" && echo "SIGTERM $service :$port (pid $pid)"
  done < <(processes)
  while any_alive; do
    if [ "$waited" -ge "$GRACE" ]; then
      echo "grace period of ${GRACE}s over: SIGKILL" >&2
      while read -r service port pid; do alive "$pid" && kill -KILL "$pid"; done < <(processes)
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
  if alive "$honcho"; then
    kill -CONT "$honcho" 2>/dev/null || true
    kill -TERM "$honcho" 2>/dev/null || true
    for _ in $(seq 1 20); do alive "$honcho" || break; sleep 0.5; done
    alive "$honcho" && kill -KILL "$honcho"
  fi
  rm -f "$SF_LOCAL_RUN"/*.pid
  echo "stopped after ${waited}s"
}

status() {
  local service port pid state
  alive "$(honcho_pid)" && echo "honcho pid $(honcho_pid), log $LOG" || echo "honcho not running"
  printf '%-10s %-6s %-8s %s\n' SERVICE PORT PID HEALTH
  while read -r service port pid; do
    state="down"
    alive "$pid" && state="$(health_of "$port" || echo 'no answer')"
    printf '%-10s %-6s %-8s %s\n' "$service" "$port" "$pid" "$state"
  done < <(processes | sort -k2n)
}

case "${1:-}" in
  up) up "${2:-${WORKERS:-1}}" ;;
  down) down ;;
  scale) [ -n "${2:-}" ] || die "usage: local.sh scale N"; down; up "$2" ;;
  status) status ;;
  logs) exec tail -n 100 -F "$LOG" ;;
  *) die "usage: local.sh up [WORKERS] | down | scale N | status | logs" ;;
esac
