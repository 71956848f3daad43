# The two commands a newcomer types: `make demo` (the main job) and `make test` (the suite).
# Both create .venv on a fresh machine: CPU torch 2.13.0 first, then the package with its extras,
# every package at the exact version of requirements/lock.txt (what CI saw).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mutomo-installed
LOCK := requirements/lock.txt
PIP_VERSION := 26.3
# A throwaway environment with the newest versions pyproject.toml's ranges allow (make test-latest, make lock).
LATEST := .venv-latest

.PHONY: demo test docs screenshots test-slow test-latest latest-env lock lint benchmark bench-check clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev,docs]"
	touch $(STAMP)

# The main job: optimise the ladle-furnace detector from TomOpt's poor start, compare with the
# human designs, write runs/ladle_furnace/report.html (a finished run is reused; --fresh redoes it).
demo: $(STAMP)
	$(BIN)/mutomo optimise ladle_furnace

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs/conf.py docs/_ext docs/tutorials_src docs/take_screenshots.py
	$(BIN)/ruff format --check src tests benchmarks examples docs/conf.py docs/_ext docs/tutorials_src docs/take_screenshots.py
	$(BIN)/mypy

test: $(STAMP) lint docs
	$(BIN)/python -m pytest -q -m "not slow"

# The documentation site (docs/_build/html/index.html), warnings as errors: the configuration,
# command-line and API references generated from the code, the results tables from
# benchmarks/results/*.json, and the tutorials in docs/tutorials_src run in their short form
# (sphinx-gallery reruns a tutorial only when its script changed). `make test` builds it too.
docs: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

# Screenshots of the built site in headless Chromium (a developer's check, not part of `make test`):
# needs `pip install playwright` and a Chromium (see docs/take_screenshots.py).
screenshots: docs
	$(BIN)/python docs/take_screenshots.py

# Long validations (e.g. the 222-point Molière sweep, ~10 minutes): not part of `make test`.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Drift seen by a developer before a user sees it: the suite on the newest allowed versions, in a
# throwaway venv (not part of CI; say in the closing note what it found).
latest-env:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet torch==2.13.0
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev,docs]"

test-latest: latest-env
	$(LATEST)/bin/ruff check src tests benchmarks examples
	$(LATEST)/bin/mypy
	$(LATEST)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider

# Regenerate the lock on purpose from the newest allowed versions; then `make test` and commit it.
lock: latest-env
	{ sed -n '/^#/p' $(LOCK); $(LATEST)/bin/python -m pip freeze --exclude-editable \
		| sed 's/^torch==2.13.0+cpu$$/torch==2.13.0/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

benchmark: $(STAMP)
	$(BIN)/python benchmarks/simulation_throughput.py

# A guard against speed slips (not part of `make test`): rerun the simulation throughput benchmark
# and compare it with the newest record in benchmarks/results/simulation_throughput/, printing any
# slip over 10 %. A benchmark, not a test: rerun on a quiet machine before believing a slip.
bench-check: $(STAMP)
	$(BIN)/python benchmarks/bench_check.py

clean:
	rm -rf $(VENV) $(LATEST) demo_output runs .pytest_cache .mypy_cache .ruff_cache docs/_build docs/_generated docs/tutorials
