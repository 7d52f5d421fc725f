# Two commands on a fresh machine (see README.md):
#   make run    build everything and run the runner with the bundled plugins
#   make test   build everything and run the whole test suite, native and pure Python
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= unix:/tmp/runner.sock
PYTEST_ARGS ?=

.PHONY: install run test test-native test-pure lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Editable install: builds the Cython kernels in place (a failed compile fails here).
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py $(wildcard src/a6native/*.pyx src/a6native/*.pxd src/a6native/*.pxi)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	APISIX_LISTEN_ADDRESS=$${APISIX_LISTEN_ADDRESS:-$(LISTEN)} $(BIN)/a6-runner run

# The suite twice (compiled kernels, then A6_NO_EXTENSIONS=1), and every microbenchmark
# once as a plain test (--benchmark-disable: no timing, just that each still runs).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	A6_NO_EXTENSIONS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest bench --benchmark-disable -q -p no:cacheprovider

test-native: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-pure: install
	A6_NO_EXTENSIONS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests plugins bench
	$(BIN)/ruff format --check src tests plugins bench
	$(BIN)/mypy

bench: install
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,mean,ops

clean:
	rm -rf build $(VENV) src/*.egg-info src/a6native/*.c src/a6native/*.so
