# The two commands: `make demo` and `make test`. Each builds .venv by itself when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check check-tests lint types generated unit bench venv clean openai-agents-tests langgraph-tests

$(STAMP): pyproject.toml constraints/frameworks.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "tether needs Python 3.10+"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet -c constraints/frameworks.txt -e '.[dev]'
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

# The tests run on TEST_WORKERS pytest-xdist processes (make unit TEST_WORKERS=4 on a bigger
# machine, TEST_WORKERS=0 for one process). --dist loadfile hands out whole test files, so a
# module-scoped fixture (a benchmark smoke run, the browser, a throwaway PostgreSQL) runs once;
# it is also faster here than handing out single tests. (loadgroup would not do: pytest-xdist
# 3.8 cannot tag a test with its xdist_group under pytest 9.2, so the groups are silently not
# kept: pytest-dev/pytest-xdist#1386.)
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

# The whole suite, slow and heavy tests included; under CI=true a server test that would skip
# fails instead (tests/conftest.py), on every worker.
unit: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST)

# The fast loop while developing (about a minute on two quiet cores, warm caches): lint, types,
# fresh generated twins and the tests, all at once (make -j; each part's output is printed
# whole when it ends), the tests stopping at the first failure. The tests are all but two
# kinds, which make test runs: the slow-marked multi-process races (the conformance suite's
# multi-process clauses on every store that opens by URL, encrypted ones included; the
# workers' crash and partition clauses), and the heavy-marked tests whose cost is the case
# itself, seconds to minutes each: benchmark smoke runs, the browser, fuzzing (and fork-share
# seeds past two), tether demo, examples and process races in subprocesses, throwaway servers
# and services, checks at scale, and the rest of tests/conftest.py's _HEAVY table, each with
# its reason. The whole conformance suite encrypted on every store is in (on pooled
# PostgreSQL schemas). The tests keep their bytecode (PYTHONDONTWRITEBYTECODE emptied):
# compiling tether and rewriting the test modules' asserts again costs each worker seconds.
check: $(STAMP)
	@$(MAKE) --no-print-directory -j 4 --output-sync=target lint types generated check-tests

check-tests: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -x $(XDIST) -m "not slow and not heavy"

# The OpenAI Agents SDK's own tests (from its sdist) on tether, through tests/frameworks/
# openai_agents_plugin.py: runner-level files and session files on memory and SQLite, the
# session files on Redis and PostgreSQL. Deselected tests: tests/frameworks/openai_agents_deselected.txt.
AGENTS_SDK := .frameworks/openai_agents-0.24.0
AGENTS_SESSION_TESTS := tests/memory tests/utils/test_simple_session.py tests/test_hitl_session_scenario.py
AGENTS_RUNNER_TESTS := tests/deferred_session_writes tests/test_agent_runner.py \
	tests/test_agent_runner_streamed.py tests/test_cancel_streaming.py \
	tests/test_error_logging_redaction.py tests/test_handoff_history_duplication.py \
	tests/test_invalid_final_output_handler.py tests/test_max_turns.py \
	tests/test_native_tool_failure_history.py tests/test_programmatic_tool_calling.py \
	tests/test_prompt_cache_key.py tests/test_run_impl_resume_paths.py \
	tests/test_run_state_pending_input.py tests/test_runner_guardrail_resume.py \
	tests/test_runner_tracing_disabled.py tests/test_runtime_symmetry_contract.py \
	tests/test_soft_cancel.py tests/test_tool_batch_failure_history.py \
	tests/test_tool_failure_boundaries.py
AGENTS_PYTEST := PYTHONPATH=$(CURDIR)/tests/frameworks $(CURDIR)/$(BIN)/python -m pytest -q \
	-p openai_agents_plugin -p no:cacheprovider

$(AGENTS_SDK)/.unpacked:
	@mkdir -p .frameworks
	@$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: \
		-c constraints/frameworks.txt openai-agents -d .frameworks
	@tar -xzf .frameworks/openai_agents-0.24.0.tar.gz -C .frameworks
	@touch $@

openai-agents-tests: $(STAMP) $(AGENTS_SDK)/.unpacked
	cd $(AGENTS_SDK) && for backend in memory sqlite; do \
		TETHER_AGENTS_BACKEND=$$backend $(AGENTS_PYTEST) $(AGENTS_SESSION_TESTS) $(AGENTS_RUNNER_TESTS) \
		|| exit 1; done
	cd $(AGENTS_SDK) && for backend in redis postgres; do \
		TETHER_AGENTS_BACKEND=$$backend $(AGENTS_PYTEST) $(AGENTS_SESSION_TESTS) || exit 1; done

# LangGraph's own graph tests (from its sdist) on tether's savers, through
# tests/frameworks/langgraph_plugin.py: every test that takes the sdist's sync_checkpointer or
# async_checkpointer fixture (-k tether keeps just those), on SQLite and PostgreSQL.
LANGGRAPH_SDIST := .frameworks/langgraph-1.2.22

$(LANGGRAPH_SDIST)/.unpacked:
	@mkdir -p .frameworks
	@$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: \
		-c constraints/frameworks.txt langgraph -d .frameworks
	@tar -xzf .frameworks/langgraph-1.2.22.tar.gz -C .frameworks
	@touch $@

langgraph-tests: $(STAMP) $(LANGGRAPH_SDIST)/.unpacked
	cd $(LANGGRAPH_SDIST) && NO_DOCKER=true TETHER_LANGGRAPH_STORES=sqlite,postgres \
		PYTHONPATH=$(CURDIR)/tests/frameworks $(CURDIR)/$(BIN)/python -m pytest -q \
		-p langgraph_plugin -p no:cacheprovider -k tether \
		$$(grep -l "sync_checkpointer\|async_checkpointer" tests/test_*.py)

test: lint types generated unit openai-agents-tests langgraph-tests

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
#                                 and docs/benchmarks.md (about 32 minutes on 2 cores)
# make bench BENCH_ARGS=--quick   a smoke run (under 2 minutes); the docs are left alone
BENCH_ARGS ?= --docs
bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .frameworks
