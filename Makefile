# Two commands on a fresh machine (see README.md):
#   make run    build everything and run the runner with the bundled plugins
#   make test   build everything and run the whole test suite, native and pure Python
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= unix:/tmp/runner.sock
PYTEST_ARGS ?=

.PHONY: install run test test-native test-pure test-dist lint bench clean redis-server

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

# The Redis tests start their own redis-server (Debian's package): installed here when
# missing, as root (CI); anyone else is told what to install.
redis-server:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server; \
	  else \
	    echo "make test: the Redis tests need redis-server: run 'sudo apt-get install redis-server' (Debian/Ubuntu)" >&2; exit 1; \
	  fi; }

# The suite twice (compiled kernels, then A6_NO_EXTENSIONS=1), the release as a user gets
# it (test-dist), and every microbenchmark once as a plain test (--benchmark-disable: no
# timing, just that each still runs).
test: install redis-server
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	A6_NO_EXTENSIONS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python scripts/check-dist
	$(BIN)/python -m pytest bench --benchmark-disable -q -p no:cacheprovider

test-native: install redis-server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-pure: install redis-server
	A6_NO_EXTENSIONS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# sdist, a native wheel built from it and a pure wheel, each installed into a fresh venv
# without Cython and called over the socket (about a minute: one compile of the kernels).
test-dist: install
	$(BIN)/python scripts/check-dist

lint: install
	$(BIN)/ruff check src tests plugins bench
	$(BIN)/ruff format --check src tests plugins bench
	$(BIN)/mypy

bench: install
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,mean,ops

clean:
	rm -rf build $(VENV) src/*.egg-info src/a6native/*.c src/a6native/*.so
