# The two commands a newcomer types: `make demo` (the main job) and `make test` (the suite).
# Both create .venv on a fresh machine: CPU torch 2.13.0 first, then the package with its extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mutomo-installed

.PHONY: demo test test-slow lint benchmark bench-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The main job: optimise the ladle-furnace detector from TomOpt's poor start, compare with the
# human designs, write runs/ladle_furnace/report.html (a finished run is reused; --fresh redoes it).
demo: $(STAMP)
	$(BIN)/mutomo optimise ladle_furnace

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow"

# Long validations (e.g. the 222-point Molière sweep, ~10 minutes): not part of `make test`.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

benchmark: $(STAMP)
	$(BIN)/python benchmarks/simulation_throughput.py

# A guard against speed slips (not part of `make test`): rerun the simulation throughput benchmark
# and compare it with the newest record in benchmarks/results/simulation_throughput/, printing any
# slip over 10 %. A benchmark, not a test: rerun on a quiet machine before believing a slip.
bench-check: $(STAMP)
	$(BIN)/python benchmarks/bench_check.py

clean:
	rm -rf $(VENV) demo_output runs .pytest_cache .mypy_cache .ruff_cache
