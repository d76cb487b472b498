# Customer Focus Platform. `make run` starts everything; `make test` checks everything.
# Both install what they need first: uv (into .tools/ if it is not on PATH),
# then the locked dependencies, every group (dev, and ops for the embedded servers), into .venv/.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
RUN_ARGS ?=

.PHONY: install run test lint typecheck pytest test-faults bench clean compose-check

install: $(VENV)/.installed

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==0.13.9"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-groups --python 3.11
	@touch $@

run: install ## start the embedded PostgreSQL and broker and the four services (RUN_ARGS="--base-port 9001" to move them)
	$(BIN)/customer-focus up $(RUN_ARGS)

# System tools some checks need, from Debian's packages when they are missing
# (root, or passwordless sudo); otherwise say what to install.
define need_tool
	@command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else echo "this needs $(1): apt-get install -y $(2)" >&2; exit 1; fi; }
endef

# The secrets are required by docker-compose.yml and empty in .env.example; any value validates.
compose-check: ## validate docker-compose.yml with docker-compose and its proxy's Caddyfile with caddy (Debian packages)
	$(call need_tool,docker-compose,docker-compose)
	$(call need_tool,caddy,caddy)
	CF_AUTH_SECRET=check POSTGRES_PASSWORD=check DATABASE_PASSWORD=check docker-compose --env-file .env.example config -q
	caddy adapt --config deploy/proxy/Caddyfile --adapter caddyfile > /dev/null

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy .

pytest: install ## the suite; the dashboard test drives Debian's headless chromium, the manifests test renders with Debian's kubectl
	$(call need_tool,chromium,chromium)
	$(call need_tool,kubectl,kubectl)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck compose-check pytest ## lint, type checks, compose validation and the whole suite on real PostgreSQL and Kafka

test-faults: install ## the full fault-injection suite (10,000 complaints)
	CF_FAULTS_SCALE=full $(BIN)/pytest -m faults tests/faults $(PYTEST_ARGS)

bench: install ## every benchmark; results in bench/results/
	$(call need_tool,wrk,wrk)
	$(call need_tool,hey,hey)
	$(BIN)/python -m bench.run

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
