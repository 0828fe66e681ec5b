# Service Feature — build and operations.
# `make demo` and `make test` set everything up on a fresh machine: the virtualenv (uv, from the
# committed uv.lock) and the system packages the platform uses (git, bubblewrap).

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

.DEFAULT_GOAL := help

## —— Set-up ————————————————————————————————————————————————————————————————
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	@touch $@

.PHONY: install
install: system-deps $(VENV)/.installed ## Create the virtualenv and install the project (locked)

.PHONY: system-deps
system-deps: ## Install the system packages the platform needs (git, bubblewrap) where missing
	@missing=""; \
	command -v git >/dev/null || missing="$$missing git"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
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

## —— Quality ———————————————————————————————————————————————————————————————
.PHONY: test
test: install ## Run the whole test suite
	SF_REQUIRE_BWRAP=1 $(BIN)/pytest -n auto --dist loadgroup $(PYTEST_ARGS)

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
