# The two commands of the README:
#   make run    install everything, migrate, seed the demo tenant, serve on 127.0.0.1:8000
#   make test   install everything, start PostgreSQL and Redis if needed, run every test
# in both run modes (embedded, then production: PostgreSQL + Redis + a Celery worker).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN = $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-embedded test-production lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seeddemo
	$(BIN)/uvicorn config.asgi:application --host $(HOST) --port $(PORT) --lifespan off

test: install
	bash tests/ensure_services.sh
	$(BIN)/ruff check .
	PARLEY_TEST_STACK=embedded $(BIN)/python -m pytest
	PARLEY_TEST_STACK=production $(BIN)/python -m pytest

test-embedded: install
	PARLEY_TEST_STACK=embedded $(BIN)/python -m pytest

test-production: install
	bash tests/ensure_services.sh
	PARLEY_TEST_STACK=production $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
