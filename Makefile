# layerscope: `make run` serves the app, `make test` runs the tests. Both set up .venv first.
# `make run WORKERS=3`: three app processes behind nginx (`make system-deps` installs it).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT ?= 8501
ADDRESS ?= 127.0.0.1
WORKERS ?= 1

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
ifeq ($(WORKERS),1)
	$(VENV)/bin/python -m ui.serve --server.address $(ADDRESS) --server.port $(PORT)
else
	@command -v nginx >/dev/null 2>&1 || $(MAKE) system-deps
	$(VENV)/bin/python -m ui.proxy --workers $(WORKERS) --address $(ADDRESS) --port $(PORT)
endif

# Two test processes, whole files each (each serves its own app for its browser tests): the
# browser tests wait on the app much of the time, so the two overlap.
test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

# Retrains the shipped runs and stores their first views' results; RESULTS_ONLY=1: results only.
assets: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m core.models.shipped $(if $(RESULTS_ONLY),--results)

bench: $(STAMP)
	$(VENV)/bin/python bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .
