# The two commands of README: `make run` and `make test`. Both bootstrap .venv on first use.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-stamp

.PHONY: run test check lint types bench bench-quick chaos services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
