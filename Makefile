# The two commands: `make demo` and `make test`. Each builds .venv by itself when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types generated unit bench venv clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "tether needs Python 3.10+"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(BIN)/tether demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

generated: $(STAMP)
	$(BIN)/python tools/unasync.py --check
	$(BIN)/python tools/cli_reference.py --check

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint types generated unit

# The peers run in their own virtualenv: they are never tether dependencies.
BENCH_VENV := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): benchmarks/requirements-peers.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	@$(BENCH_VENV)/bin/python -m pip install --quiet -r benchmarks/requirements-peers.txt
	@touch $(BENCH_STAMP)

# make bench                      the full run (tether's stores, raw drivers, the peers,
#                                 Redis and PostgreSQL, memory), then the report, the chart
#                                 and docs/benchmarks.md (under 20 minutes)
# make bench BENCH_ARGS=--quick   a smoke run (under 2 minutes); the docs are left alone
BENCH_ARGS ?= --docs
bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
