# The two commands of the README:
#   make run    install everything, migrate, seed the demo tenant, serve on 127.0.0.1:8000
#   make test   install everything, start PostgreSQL and Redis if needed, run every test
# in both run modes (embedded, then production: PostgreSQL + Redis + a Celery worker).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN = $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-test run test test-embedded test-production test-faults lint bench bench-quick bench-install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# The OIDC login tests run a real OpenID Connect provider (tests/oidc, the npm package
# oidc-provider at the version its lockfile pins). Node.js and npm come from Debian's packages
# when they are missing (as root, or with passwordless sudo); if that fails the OIDC tests are
# skipped, except under CI=true, where that is an error.
OIDC_DIR = tests/oidc

install-test: install $(OIDC_DIR)/node_modules/.installed

$(OIDC_DIR)/node_modules/.installed: $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || bash tests/ensure_services.sh --node-only || true
	@if command -v npm >/dev/null 2>&1; then \
		cd $(OIDC_DIR) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	elif [ "$$CI" = "true" ]; then \
		echo "npm is missing: the OIDC login tests need Node.js and npm." >&2; exit 1; \
	else \
		echo "npm is missing: the OIDC login tests will be skipped." >&2; \
	fi

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seeddemo --url http://$(HOST):$(PORT)
	$(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --lifespan off

# Both run modes at once (tests/run_suite.sh: the embedded pass, the production pass and its fault
# suite, in parallel; about 8 minutes on two cores).
test: install-test
	bash tests/ensure_services.sh
	$(BIN)/ruff check .
	PYTHON=$(BIN)/python bash tests/run_suite.sh

test-embedded: install-test
	PARLEY_TEST_STACK=embedded $(BIN)/python -m pytest

test-production: install-test
	bash tests/ensure_services.sh
	PARLEY_TEST_STACK=production $(BIN)/python -m pytest

# The fault suite alone (tests/faults, RELIABILITY.md), in both run modes, with 20 trials of each
# kill instead of the 2 that `make test` runs; PARLEY_FAULT_TRIALS=N make test-faults for another number.
PARLEY_FAULT_TRIALS ?= 20

test-faults: install-test
	bash tests/ensure_services.sh
	PARLEY_FAULT_TRIALS=$(PARLEY_FAULT_TRIALS) PARLEY_TEST_STACK=embedded $(BIN)/python -m pytest tests/faults -s
	PARLEY_FAULT_TRIALS=$(PARLEY_FAULT_TRIALS) PARLEY_TEST_STACK=production $(BIN)/python -m pytest tests/faults -s

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The benchmark (bench/README.md, BENCHMARKS.md): Parley in production and embedded mode against
# LiteLLM's proxy and against the fake upstream itself, on loopback. `make bench` is the full run
# (about 20 minutes on 2 cores), `make bench-quick` a short one (about 8); BENCH_ARGS passes options
# to bench/run.py (e.g. BENCH_ARGS='--note "machine shared"'). Results: bench/results/latest.json,
# bench/results/latency.png and the generated part of BENCHMARKS.md.
BENCH_VENV = bench/.venv

bench-install: install $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements.txt
	touch $@

bench: bench-install
	bash tests/ensure_services.sh
	$(BIN)/python bench/run.py --plan full $(BENCH_ARGS)

bench-quick: bench-install
	bash tests/ensure_services.sh
	$(BIN)/python bench/run.py --plan quick $(BENCH_ARGS)
