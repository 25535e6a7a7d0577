# layerscope: `make run` serves the app, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: run test setup system-deps assets bench lint format

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,ray]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

system-deps:
	@bash scripts/system_deps.sh

run: $(STAMP)
	$(VENV)/bin/python -m ui.serve --server.address $(ADDRESS) --server.port $(PORT)

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest

# Retrains the shipped runs and stores their first views' results; RESULTS_ONLY=1: results only.
assets: $(STAMP)
	$(VENV)/bin/python -m core.models.shipped $(if $(RESULTS_ONLY),--results)

bench: $(STAMP)
	$(VENV)/bin/python bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
