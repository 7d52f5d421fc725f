# Two commands on a fresh machine (see README.md):
#   make run    build everything and run the runner with the bundled plugins
#   make test   build everything and run the whole test suite, native and pure Python
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= unix:/tmp/runner.sock
PYTEST_ARGS ?=

.PHONY: install run test test-native test-pure test-stress mutate lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Editable install: builds the Cython kernels in place (a failed compile fails here).
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py $(wildcard src/a6native/*.pyx src/a6native/*.pxd)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	APISIX_LISTEN_ADDRESS=$${APISIX_LISTEN_ADDRESS:-$(LISTEN)} $(BIN)/a6-runner run

# The suite twice (compiled kernels, then A6_NO_EXTENSIONS=1) under coverage, and every
# microbenchmark once as a plain test (--benchmark-disable: no timing, just that each
# still runs). Coverage of both runs is combined (spawned runners and forked workers
# included, see [tool.coverage.run]) and checked against the floors in pyproject.toml.
COVERAGE_DIR := $(CURDIR)/build/coverage
COVERAGE := COVERAGE_FILE=$(COVERAGE_DIR)/data $(BIN)/python -m coverage

test: install
	rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	$(COVERAGE) run -m pytest $(PYTEST_ARGS)
	A6_NO_EXTENSIONS=1 $(COVERAGE) run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest bench --benchmark-disable -q -p no:cacheprovider
	$(COVERAGE) combine -q
	$(COVERAGE) report
	$(COVERAGE) json -q -o $(COVERAGE_DIR)/coverage.json
	$(BIN)/python scripts/coverage-floors $(COVERAGE_DIR)/coverage.json

test-native: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-pure: install
	A6_NO_EXTENSIONS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# A flake check: the suite under CPU load (STRESS_BUSY spinning processes) in random
# order, STRESS_RUNS times in a row, alternating native and pure (see scripts/stress).
test-stress: install
	$(BIN)/python scripts/stress $(PYTEST_ARGS)

# Mutation testing, by hand (README): mutmut mutates the modules listed in pyproject.toml
# ([tool.mutmut] only_mutate), runs the tests that reach each mutant and lists survivors.
# Results stay in mutants/ (a second run only redoes what changed; rm -rf mutants to redo all).
$(VENV)/.mutation: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,mutation]'
	touch $@

mutate: $(VENV)/.mutation
	$(BIN)/mutmut run
	$(BIN)/mutmut results

lint: install
	$(BIN)/ruff check src tests plugins bench
	$(BIN)/ruff format --check src tests plugins bench
	$(BIN)/mypy

bench: install
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,mean,ops

clean:
	rm -rf build $(VENV) src/*.egg-info src/a6native/*.c src/a6native/*.so
