# Thin aliases. `run` and `test` (re)create .venv when it is missing or pyproject.toml changed.
PY      := .venv/bin/python
STAMP   := .venv/.installed
PYTEST_ARGS ?=
# Test files are spread over this many processes (one file stays in one process, so a
# file's shared fixtures are built once); each process compiles and runs on its own core.
PYTEST_WORKERS ?= 2

.PHONY: run test test-all bench figures lint format clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	.venv/bin/adamjax demo

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

figures: $(STAMP)
	.venv/bin/adamjax figures --scale paper

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks experiments examples
	$(PY) -m ruff format --check src tests benchmarks experiments examples

format: $(STAMP)
	$(PY) -m ruff check --fix src tests benchmarks experiments examples
	$(PY) -m ruff format src tests benchmarks experiments examples

clean:
	rm -rf .venv build dist src/*.egg-info .pytest_cache .ruff_cache results figures-out
