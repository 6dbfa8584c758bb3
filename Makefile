# Tenpo: every documented way to build, run and check the system goes through here.
# Needs only Python >= 3.11 and make; uv is bootstrapped into .tools/ when it is missing.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/uv/bin/uv)
# Use the machine's Python (>= 3.11); never download one.
export UV_PYTHON_DOWNLOADS := never
RUN := $(UV) run --frozen --no-sync
PROTO_OUT := libs/protos
PROTO_FILES = $(shell find protos -name '*.proto' | sort)
BUF := .tools/node_modules/.bin/buf
# The policy linter for deploy/ (tests/deploy/test_lint.py), pinned, in a virtualenv of its own:
# its many dependencies stay out of the project's lock.
CHECKOV_VERSION := 3.3.30
CHECKOV := .tools/checkov/bin/checkov

.PHONY: help setup protos run demo test test-unit lint fmt bench haproxy migrate clean import browser checkov examples

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/uv/bin/uv:
	@echo "uv not found: bootstrapping it into .tools/uv (no root needed)"
	@$(PYTHON) -m venv --clear .tools/uv
	@.tools/uv/bin/pip install --quiet --disable-pip-version-check uv

.venv/.synced: uv.lock pyproject.toml libs/kit/pyproject.toml libs/protos/pyproject.toml \
		tools/devtools/pyproject.toml | $(UV)
	@$(UV) sync --frozen --quiet
	@touch $@

$(PROTO_OUT)/.generated: .venv/.synced $(PROTO_FILES) tools/devtools/tenpo/devtools/protogen.py
	@rm -rf $(PROTO_OUT)/tenpo
	@$(RUN) python -m tenpo.devtools.protogen protos $(PROTO_OUT)
	@touch $@

setup: $(PROTO_OUT)/.generated ## Install dependencies and generate code

protos: $(PROTO_OUT)/.generated ## Generate Python code and type stubs from protos/

run: setup examples ## Start the whole system on embedded PostgreSQL and NATS (Ctrl-C stops it)
	@env -u PYTHONDONTWRITEBYTECODE $(RUN) python -m tenpo.devtools.stack run

# `make demo` tells the seeds' journeys against a running `make run` through its touchpoints,
# narrated; the same code is tests/journeys/. DEMO_URL names another gateway, DEMO_ARGS e.g.
# "--only 2,7" or "--data-dir path" (the development credentials and the mail catcher's mails).
DEMO_URL ?= http://127.0.0.1:8080
demo: setup ## Tell the journeys against a running `make run`, narrated (DEMO_URL, DEMO_ARGS="--only 2,7")
	@$(RUN) python -m tenpo.devtools.demo --base-url "$(DEMO_URL)" $(DEMO_ARGS)

migrate: setup ## Apply every service's migrations (embedded stack, or the URLs in the environment)
	@$(RUN) python -m tenpo.devtools.stack migrate

import: setup ## Import products into the running catalog: make import FILE=products.csv (or .jsonl)
	@test -n "$(FILE)" || (echo "usage: make import FILE=path/to/products.csv|.jsonl" && exit 2)
	@$(RUN) python -m services.catalog import "$(FILE)"

# `make test` runs in parallel worker processes (pytest-xdist), each with its own PostgreSQL and
# NATS. Most of a test's time is spent waiting (servers, subprocesses, timeouts), so twice as
# many workers as CPUs pays off (docs/development.md), capped for memory. The tests that share
# one whole stack (tests/touchpoints, tests/journeys) and the cluster-shape test (its own whole
# stack, for minutes) stay in one worker each and start first (`--dist loadgroup`,
# tests/conftest.py); the rest are handed out as workers free up.
# TEST_WORKERS=0 runs everything in this one process; PYTEST_ARGS is appended, so e.g.
# PYTEST_ARGS="tests/kit -x" narrows the run. Bytecode is written even where the environment
# says PYTHONDONTWRITEBYTECODE: the suite starts hundreds of Python processes (workers,
# services, migrators, the dev stack), and compiling every imported module from source in
# each costs about three times the CPU of an import from .pyc files.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); w=$$((2 * n)); echo $$((w > 8 ? 8 : w)))

test: setup browser checkov haproxy examples ## Run the whole test suite against real PostgreSQL and NATS
	@env -u PYTHONDONTWRITEBYTECODE $(RUN) pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The browser tests (/docs, tests/touchpoints) drive Debian's chromium (never a browser
# download). As root with apt-get (CI) it is installed when missing, with a Japanese font for
# readable screenshots; otherwise the tests say what is missing and fail.
browser: ## Install Debian's chromium (and a Japanese font) for the browser tests when missing (as root)
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium with apt-get (for the browser tests)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "could not install chromium: the browser tests will fail"; \
	  else echo "chromium is missing and this is not root: the browser tests will fail"; fi; }
	@{ command -v fc-list >/dev/null && [ -n "$$(fc-list :lang=ja)" ]; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing fonts-ipafont-gothic with apt-get (Japanese text in screenshots)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-ipafont-gothic >/dev/null; } \
	      || echo "could not install a Japanese font: screenshots show boxes for Japanese text"; \
	  else echo "no Japanese font: screenshots show boxes for Japanese text"; fi; }

# The demo touchpoints' one third-party file, a QR encoder (MIT), pinned and taken from the npm
# registry's tarball (npm checks its integrity) at setup time, never from a CDN at run time.
# Without npm the kiosk shows the hand-off code as text only.
QRCODE_VERSION := 2.0.4
examples/vendor/qrcode.mjs:
	@mkdir -p .tools/npm-pack examples/vendor
	@if command -v npm >/dev/null; then \
	  npm pack --silent --pack-destination .tools/npm-pack qrcode-generator@$(QRCODE_VERSION) >/dev/null \
	    && tar -xzf .tools/npm-pack/qrcode-generator-$(QRCODE_VERSION).tgz -O package/dist/qrcode.mjs > $@.tmp \
	    && mv $@.tmp $@ || { rm -f $@.tmp; echo "could not fetch qrcode-generator: the kiosk shows its code as text"; }; \
	else echo "npm is missing: the kiosk shows its hand-off code as text (no QR image)"; fi

examples: examples/vendor/qrcode.mjs ## Fetch the demo touchpoints' pinned QR encoder (npm)

$(CHECKOV): | $(UV)
	@echo "installing checkov $(CHECKOV_VERSION) into .tools/checkov (policy linter for deploy/)"
	@$(UV) venv --quiet --clear .tools/checkov
	@$(UV) pip install --quiet --python .tools/checkov/bin/python checkov==$(CHECKOV_VERSION)

checkov: $(CHECKOV) ## Install the Kubernetes policy linter used by the deploy tests

test-unit: setup ## Only the tests that need no servers
	@$(RUN) pytest -m "not integration" $(PYTEST_ARGS)

$(BUF):
	@npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@1.75.0 >/dev/null

lint: setup $(BUF) ## buf lint, ruff check + format, mypy, import contracts
	@$(BUF) lint $(PROTO_OUT)/tenpo_descriptors.binpb --config buf.yaml
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy
	@$(RUN) lint-imports

fmt: setup ## Format the code and apply safe fixes
	@$(RUN) ruff format .
	@$(RUN) ruff check --fix .

bench: setup haproxy ## Side-by-side benchmarks; prints ratios and writes bench/results.json
	@env -u PYTHONDONTWRITEBYTECODE $(RUN) python -m bench $(BENCH_ARGS)

# The gateway's edge (GATEWAY_EDGE=haproxy) is Debian's HAProxy: its tests and the gateway
# bench need it. As root with apt-get (CI) it is installed when missing; otherwise the edge's
# tests fail saying so and the bench says it did not measure the edge.
haproxy: ## Install Debian's haproxy (the gateway's edge) when missing (as root)
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing haproxy with apt-get (the gateway's edge)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; } \
	      || echo "could not install haproxy: the edge's tests will fail"; \
	  else echo "haproxy is missing and this is not root: the edge's tests will fail"; fi; }

clean: ## Remove generated code, virtualenvs, caches and local data
	@rm -rf .venv .tools examples/vendor .test-output $(PROTO_OUT)/tenpo $(PROTO_OUT)/.generated .pytest_cache .mypy_cache .ruff_cache .data bench/results.json
	@find . -name __pycache__ -type d -prune -exec rm -rf {} +
