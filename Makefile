# The two commands a newcomer needs: `make serve` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint bench clean deploy-aws

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[serve]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.serve-installed

# Platform CLIs (osls, Vercel, Netlify's config parser): pinned in tools/npm, installed locally.
NPM_TOOLS := tools/npm/node_modules
$(NPM_TOOLS)/.installed: tools/npm/package.json tools/npm/package-lock.json
	npm ci --prefix tools/npm --no-audit --no-fund --loglevel=error
	touch $@

# The wheels the Lambda bundle is built from, fetched once so `make test` packages offline.
WHEELS := tools/wheels
$(WHEELS)/.downloaded: adapters/aws_requirements.txt | $(BIN)/python
	$(BIN)/python -m pip download -q -d $(WHEELS) -r adapters/aws_requirements.txt \
		--platform=manylinux2014_x86_64 --only-binary=:all: --python-version=3.12 --implementation=cp
	touch $@

## serve: the proxy on $HOST:$PORT (default 127.0.0.1:8000); settings come from the environment.
serve: $(VENV)/.serve-installed
	$(BIN)/python -m uvicorn adapters.app:app --host "$(HOST)" --port "$(PORT)" --no-access-log

## test: lint, types, and the whole test suite.
test: $(VENV)/.dev-installed $(NPM_TOOLS)/.installed $(WHEELS)/.downloaded lint
	$(BIN)/python -m pytest

## deploy-aws: `sls deploy` with the pinned osls CLI (AWS credentials from the usual places).
deploy-aws: $(NPM_TOOLS)/.installed
	$(NPM_TOOLS)/.bin/osls deploy $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(NPM_TOOLS) $(WHEELS) .serverless .pytest_cache .mypy_cache .ruff_cache .hypothesis
