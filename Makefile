# Service Feature — build and operations.
# `make demo` and `make test` set everything up on a fresh machine: the virtualenv (uv, from the
# committed uv.lock) and the system packages the platform uses (git, bubblewrap, passt).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
SF := $(BIN)/service-feature
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# semgrep lives in a tool environment of its own (its pins clash with the project's); its bin dir is put
# on PATH for every recipe, so the reviewer started by `make demo`, `make up-embedded` and the tests finds it.
SEMGREP_VERSION := 1.185.0
SCANNERS := $(TOOLS)/scanners
export PATH := $(CURDIR)/$(SCANNERS)/bin:$(PATH)

.DEFAULT_GOAL := help

## —— Set-up ————————————————————————————————————————————————————————————————
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	@touch $@

$(SCANNERS)/bin/semgrep: | $(UV)
	UV_TOOL_DIR=$(SCANNERS)/tools UV_TOOL_BIN_DIR=$(SCANNERS)/bin $(UV) tool install --quiet \
	  --python $(PYTHON) semgrep==$(SEMGREP_VERSION)

.PHONY: install
install: system-deps $(VENV)/.installed $(SCANNERS)/bin/semgrep ## Create the virtualenv, install the project (locked) and semgrep

.PHONY: system-deps
system-deps: ## Install the system packages the platform needs (git, bubblewrap, passt) where missing
	@missing=""; \
	command -v git >/dev/null || missing="$$missing git"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v pasta >/dev/null || missing="$$missing passt"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

## —— Use ———————————————————————————————————————————————————————————————————
.PHONY: demo
demo: install ## Run a real feature end to end on the embedded default
	$(SF) demo

.PHONY: up-embedded
up-embedded: install ## Run all four services in one process (embedded default) on :8080
	$(SF) up

## —— Deployment: shared settings ———————————————————————————————————————————
# The four services; compose, Procfile, Kubernetes and docs/deployment.md use these names.
SF_SERVICES := gateway worker reviewer executor
# What `make up` starts: the four services, the proxy that publishes the gateway's port (nginx, so the
# gateway scales) and the `feature-nats` NATS toolbox; their dependencies (postgres, nats, the one-shot
# migrate) come along. SF_INFRA: every other compose service, for restart-<svc> and logs-<svc>.
SF_UP := $(SF_SERVICES) proxy nats-box
SF_INFRA := proxy nats-box postgres nats prometheus grafana jaeger redis
# Compose reads its variables from .env; `make up` creates it and generates SF_ADMIN_KEY when missing.
SF_ENV_FILE := .env
ENSURE_ENV := deploy/compose/ensure-env.sh
SF_IMAGE_PREFIX ?= service-feature
SF_TAG ?= latest
# Compose: docker-compose.yml is the standard deployment; COMPOSE_EXTRA adds override files, e.g.
# COMPOSE_EXTRA="-f docker-compose.bwrap.yml" for the bubblewrap executor.
COMPOSE_EXTRA ?=
COMPOSE := docker compose -f docker-compose.yml $(COMPOSE_EXTRA)
COMPOSE_FULL := docker compose -f docker-compose.yml -f docker-compose.full.yml $(COMPOSE_EXTRA)
# Every container of every profile (for ps, logs, down): the project name is fixed, so this finds all.
COMPOSE_ALL := $(COMPOSE_FULL) --profile minimal
GATEWAY_URL ?= http://127.0.0.1:8080
# Local processes (run-<svc>, up-local, db-*-local): the machine's PostgreSQL and NATS unless
# DATABASE_URL / QUEUE_FEATURE_REQUEST_URI are set in the environment.
LOCAL_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/service_feature)
LOCAL_NATS_URL ?= $(or $(QUEUE_FEATURE_REQUEST_URI),nats://127.0.0.1:4222/feature.requests)
LOCAL_DATA_DIR ?= .service-feature/local
LOCAL_ENV := DATABASE_URL="$(LOCAL_DATABASE_URL)" QUEUE_FEATURE_REQUEST_URI="$(LOCAL_NATS_URL)" SF_DATA_DIR="$(LOCAL_DATA_DIR)"
# run-<svc> ports: the gateway on 8080, the others beside it.
PORT_gateway := 8080
PORT_worker := 8081
PORT_reviewer := 8082
PORT_executor := 8083
# Extra test paths per service beyond tests/unit/<svc> and tests/integration/<svc>.
TESTS_gateway := tests/e2e/test_feature_api.py
N ?=

# $(call require_service,NAME,ALLOWED): fail with the list of valid names.
require_service = @case " $(2) " in *" $(1) "*) ;; *) echo "make: unknown service '$(1)' (one of: $(2))" >&2; exit 2;; esac
# $(call require_count): N must be a positive integer.
require_count = @case "$(N)" in ''|*[!0-9]*|0) echo "make $@: give the replica count, e.g. make $@ N=3" >&2; exit 2;; esac
define require_docker
@docker info >/dev/null 2>&1 || { echo "make $@: no Docker engine answers here (docker info failed). The compose and image targets need one; without Docker use 'make up-local' (processes) or 'make up-embedded'." >&2; exit 1; }
@docker compose version >/dev/null 2>&1 || { echo "make $@: the Docker Compose v2 plugin ('docker compose') is missing" >&2; exit 1; }
endef

## —— Deployment: docker compose (needs a Docker engine) ———————————————————————
.PHONY: up
# `up --wait` names the long-running services: with the one-shot `migrate` among the targets some
# Compose versions exit 1 once it completes (docker/compose#10596); as a dependency it is waited for
# correctly (service_completed_successfully).
up: ## Start the standard deployment: 4 services + postgres + nats (compose)
	$(require_docker)
	$(ENSURE_ENV) $(SF_ENV_FILE) .env.example
	$(COMPOSE) up -d --build --wait $(SF_UP)
	@echo "gateway: $(GATEWAY_URL)  admin API key: make admin-key  (make health, make logs, make ps)"

.PHONY: up-minimal
up-minimal: ## Start gateway + worker (worker, reviewer, executor in one process) + postgres + nats
	$(require_docker)
	$(ENSURE_ENV) $(SF_ENV_FILE) .env.example
	$(COMPOSE) --profile minimal up -d --build --wait gateway worker-minimal proxy nats-box
	@echo "gateway: $(GATEWAY_URL)  admin API key: make admin-key"

.PHONY: up-full
up-full: ## Start standard + Prometheus :9090, Grafana :3000, Jaeger :16686, Redis
	$(require_docker)
	$(ENSURE_ENV) $(SF_ENV_FILE) .env.example
	$(COMPOSE_FULL) up -d --build --wait $(SF_UP) prometheus grafana jaeger redis
	@echo "gateway: $(GATEWAY_URL)  admin API key: make admin-key"

.PHONY: admin-key
admin-key: ## Print the admin API key the compose gateway registers (SF_ADMIN_KEY: the shell's, else .env's)
	@key="$${SF_ADMIN_KEY:-$$(sed -n 's/^SF_ADMIN_KEY=//p' "$(SF_ENV_FILE)" 2>/dev/null | tail -n 1)}"; \
	if [ -z "$$key" ]; then \
	  echo "make $@: no SF_ADMIN_KEY in the environment or $(SF_ENV_FILE): 'make up' generates one; or create a key with service-feature apikey create (docs/deployment.md)" >&2; \
	  exit 1; \
	fi; \
	echo "$$key"

.PHONY: down
down: ## Stop and remove every compose container (all profiles), keep volumes
	$(require_docker)
	$(COMPOSE_ALL) down --remove-orphans

.PHONY: down-clean
down-clean: ## Stop everything and delete volumes (database, queue, workspaces) and built images
	$(require_docker)
	$(COMPOSE_ALL) down --remove-orphans --volumes --rmi local

.PHONY: restart
restart: ## Restart every compose service
	$(require_docker)
	$(COMPOSE_ALL) restart

restart-%: ## Restart one compose service: make restart-worker
	$(call require_service,$*,$(SF_SERVICES) worker-minimal $(SF_INFRA))
	$(require_docker)
	$(COMPOSE_ALL) restart $*

.PHONY: ps
ps: ## Show the compose containers and their health
	$(require_docker)
	$(COMPOSE_ALL) ps

# No service of SF_SERVICES publishes a host port (the proxy does, for the gateway), so any count works.
# After make up-full, add its file: COMPOSE_EXTRA="-f docker-compose.full.yml" make scale-gateway N=3.
scale-%: ## Scale one compose service: make scale-worker N=5 (gateway, worker, reviewer, executor)
	$(call require_service,$*,$(SF_SERVICES))
	$(require_count)
	$(require_docker)
	$(COMPOSE) up -d --no-deps --no-recreate --wait --scale $*=$(N) $*

.PHONY: logs
logs: ## Follow the four services' logs (compose)
	$(require_docker)
	$(COMPOSE_ALL) logs -f --tail=200 $(SF_SERVICES)

.PHONY: logs-all
logs-all: ## Every container's logs since start, with timestamps, infrastructure included
	$(require_docker)
	$(COMPOSE_ALL) logs --timestamps --no-color

logs-%: ## Follow one compose service's logs: make logs-worker
	$(call require_service,$*,$(SF_SERVICES) worker-minimal migrate $(SF_INFRA))
	$(require_docker)
	$(COMPOSE_ALL) logs -f --tail=200 $*

.PHONY: db-shell
db-shell: ## psql in the compose PostgreSQL (make db-shell-local: the machine's)
	$(require_docker)
	$(COMPOSE) exec postgres psql -U feature -d feature

.PHONY: db-reset
db-reset: ## Drop and re-create the compose database, migrate, restart the services
	$(require_docker)
	$(COMPOSE) stop $(SF_SERVICES)
	$(COMPOSE) exec -T postgres dropdb -U feature --if-exists --force feature
	$(COMPOSE) exec -T postgres createdb -U feature feature
	$(COMPOSE) run --rm migrate
	$(COMPOSE) start $(SF_SERVICES)

.PHONY: docker-build
docker-build: ## Build every image (one Dockerfile; a target per service)
	@docker info >/dev/null 2>&1 || { echo "make $@: no Docker engine answers here (docker info failed)" >&2; exit 1; }
	docker build --target runtime -t $(SF_IMAGE_PREFIX):$(SF_TAG) .
	@for service in $(SF_SERVICES); do \
	  echo "docker build --target $$service -t $(SF_IMAGE_PREFIX)-$$service:$(SF_TAG) ."; \
	  docker build --target $$service -t $(SF_IMAGE_PREFIX)-$$service:$(SF_TAG) . || exit 1; \
	done

docker-build-%: ## Build one service's image: make docker-build-worker
	$(call require_service,$*,$(SF_SERVICES))
	@docker info >/dev/null 2>&1 || { echo "make $@: no Docker engine answers here (docker info failed)" >&2; exit 1; }
	docker build --target $* -t $(SF_IMAGE_PREFIX)-$*:$(SF_TAG) .

## —— Deployment: local processes (no Docker: the machine's PostgreSQL and NATS) ——
.PHONY: up-local
up-local: install ## Every service as its own process (honcho, Procfile): gateway :8080, worker :8180.., reviewer :8280, executor :8380
	$(LOCAL_ENV) SF_BIN=$(BIN) scripts/local.sh up $(or $(N),1)

.PHONY: down-local
down-local: ## Stop the up-local processes gracefully (SIGTERM, drain, then stop honcho)
	SF_DATA_DIR="$(LOCAL_DATA_DIR)" scripts/local.sh down

.PHONY: scale-local-worker
scale-local-worker: ## Restart the up-local formation with N worker processes: make scale-local-worker N=3
	$(require_count)
	@$(MAKE) --no-print-directory install
	$(LOCAL_ENV) SF_BIN=$(BIN) scripts/local.sh scale $(N)

.PHONY: ps-local
ps-local: ## Pids, ports and /health of the up-local processes
	SF_DATA_DIR="$(LOCAL_DATA_DIR)" scripts/local.sh status

.PHONY: logs-local
logs-local: ## Follow the up-local processes' combined log
	SF_DATA_DIR="$(LOCAL_DATA_DIR)" scripts/local.sh logs

.PHONY: local-db
local-db: install ## Create the local database if missing and apply the migrations
	$(BIN)/python scripts/ensure_database.py "$(LOCAL_DATABASE_URL)"
	$(LOCAL_ENV) $(SF) db upgrade

run-%: ## Run one service in the foreground against the local PostgreSQL/NATS: make run-worker
	$(call require_service,$*,$(SF_SERVICES))
	@$(MAKE) --no-print-directory local-db
	$(LOCAL_ENV) ALLOW_LOCAL_REPOSITORIES=$${ALLOW_LOCAL_REPOSITORIES:-true} WORKSPACE_BASE_PATH=$${WORKSPACE_BASE_PATH:-$(LOCAL_DATA_DIR)/workspaces/$*-$(PORT_$*)} $(SF) $* --port $(PORT_$*)

.PHONY: db-shell-local
db-shell-local: ## psql on the local database (LOCAL_DATABASE_URL)
	psql "$(LOCAL_DATABASE_URL)"

.PHONY: db-reset-local
db-reset-local: install ## Drop and re-create the local database, then migrate (stop up-local first)
	$(BIN)/python scripts/ensure_database.py --reset "$(LOCAL_DATABASE_URL)"
	$(LOCAL_ENV) $(SF) db upgrade

## —— Operations ————————————————————————————————————————————————————————————————
.PHONY: health
health: ## GET /health of the gateway, and of every other service reachable from here
	GATEWAY_URL=$(GATEWAY_URL) SF_DATA_DIR="$(LOCAL_DATA_DIR)" scripts/health.sh

.PHONY: nats-monitor
nats-monitor: install ## Watch the live feature status stream (service-feature watch)
	QUEUE_FEATURE_REQUEST_URI="$(LOCAL_NATS_URL)" SF_API_URL=$(GATEWAY_URL) $(SF) watch

## —— Build ————————————————————————————————————————————————————————————————————
.PHONY: build
build: | $(UV) ## Build the Python wheel and sdist into dist/ (uv build)
	$(UV) build --out-dir dist

build-%: | $(UV) ## Build one service: the same wheel holds every service (alias of build)
	$(call require_service,$*,$(SF_SERVICES))
	@$(MAKE) --no-print-directory build

test-%: ## Run one service's tests: tests/unit/<svc>, tests/integration/<svc> (else -k <svc>)
	$(call require_service,$*,$(SF_SERVICES) core deploy)
	@$(MAKE) --no-print-directory install
	@paths="$(wildcard tests/unit/$*/ tests/integration/$*/) $(TESTS_$*)"; \
	if [ -n "$${paths// /}" ]; then \
	  echo "pytest $$paths"; SF_REQUIRE_BWRAP=1 $(BIN)/pytest -n auto --dist loadgroup $$paths $(PYTEST_ARGS); \
	else \
	  echo "no tests/unit/$* or tests/integration/$*: selecting by -k $*"; \
	  $(BIN)/pytest -q -k $* $(PYTEST_ARGS); code=$$?; [ $$code -eq 5 ] && echo "no tests match $*" && code=0; exit $$code; \
	fi

## —— Kubernetes (deploy/kubernetes, kustomize) ——————————————————————————————————
.PHONY: k8s-manifests
k8s-manifests: ## Render the Kubernetes manifests (kubectl kustomize deploy/kubernetes)
	kubectl kustomize deploy/kubernetes

.PHONY: k8s-apply
k8s-apply: ## Apply them: migration Job first, then the services (needs a cluster; KEDA for the ScaledObject)
	kubectl delete job -n service-feature service-feature-migrate --ignore-not-found
	kubectl apply -k deploy/kubernetes

## —— Quality ———————————————————————————————————————————————————————————————
.PHONY: test
# SF_REQUIRE_DOCKER=1: tests/integration/docker start a private Docker engine (installing docker.io and
# debootstrap where missing) and fail rather than skip when they cannot; see tests/support/docker_engine.py.
test: install toolchains ## Run the whole test suite
	SF_REQUIRE_BWRAP=1 SF_REQUIRE_TOOLCHAINS=1 SF_REQUIRE_SEMGREP=1 SF_REQUIRE_BROWSER=1 SF_REQUIRE_DOCKER=1 $(BIN)/pytest -n auto --dist loadgroup $(PYTEST_ARGS)

.PHONY: screenshots
screenshots: install toolchains ## Refresh the README's dashboard screenshots (docs/screenshots) from the browser tests
	SF_REQUIRE_BROWSER=1 SF_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/pytest tests/e2e/browser $(PYTEST_ARGS)

.PHONY: test-docker
test-docker: install ## Only the Docker sandbox's tests, on a private engine with a local Debian base image
	SF_REQUIRE_DOCKER=1 $(BIN)/pytest tests/integration/docker $(PYTEST_ARGS)

.PHONY: toolchains
toolchains: ## Install the language toolchains the executor's tests use, and the dashboard tests' Chromium, where missing
	@missing=""; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v cargo >/dev/null || [ -x "$$HOME/.cargo/bin/cargo" ] || missing="$$missing cargo"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: lint
lint: install ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

.PHONY: fmt
fmt: install ## Format the code
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}'
