# The two commands of README: `make run` and `make test`. Both bootstrap .venv on first use.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp
# Installs are reproducible: every package pinned with its hashes, from pyproject.toml by `make lock`.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
TOOLS ?= .tools
UV := $(TOOLS)/bin/uv
# `make lock LOCK_ARGS=--upgrade` moves every pin to its newest release; plain `make lock` keeps them.
LOCK_ARGS ?=
COMPILE = $(UV) pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet $(LOCK_ARGS)

.PHONY: run test check lint types bench bench-quick chaos services clean lock

$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip setuptools
	$(VENV)/bin/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --upgrade pip
	$(TOOLS)/bin/pip install --quiet 'uv>=0.5'

lock: $(UV)  ## Pin the dependencies of pyproject.toml (runtime, and with dev tools) with hashes
	$(COMPILE) -o $(LOCK)
	$(COMPILE) --extra dev -o $(DEV_LOCK)

run: $(STAMP)  ## Start Atende on the embedded default (SQLite, in-process bus, sandbox WhatsApp)
	$(VENV)/bin/atende serve

services:  ## Make sure PostgreSQL, Redis and Chromium are there and running (installs if missing)
	bash scripts/ensure-services

test: $(STAMP) services  ## The whole suite, on SQLite and on PostgreSQL
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)
	$(VENV)/bin/mypy

check: lint types

bench: $(STAMP) services  ## All benchmark scenarios against their bare baselines
	$(VENV)/bin/python -m bench

bench-quick: $(STAMP) services
	$(VENV)/bin/python -m bench --quick

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
