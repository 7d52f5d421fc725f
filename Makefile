# Two commands on a fresh machine (see README.md):
#   make run    build everything and run the runner with the bundled plugins
#   make test   build everything and run the whole test suite, native and pure Python
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LISTEN ?= unix:/tmp/runner.sock
PYTEST_ARGS ?=

.PHONY: install run test test-native test-pure test-dist test-stress mutate lint bench clean redis-server fuzz docs

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

# The suite twice (compiled kernels, then A6_NO_EXTENSIONS=1) under coverage, the release
# as a user gets it (check-dist), every microbenchmark once as a plain test
# (--benchmark-disable: no timing, just that each still runs) and the documentation site
# (make docs). They run at once (most of a suite's time is spent waiting on the runners
# it starts), the compiled suite in two halves, NATIVE_SLOW (the files that wait longest:
# about half of its time) beside the rest; make prints each part's output whole when it
# ends (-O). Coverage of both suites is combined (spawned runners and forked workers
# included, see [tool.coverage.run]) and checked against the floors in pyproject.toml.
COVERAGE_DIR := $(CURDIR)/build/coverage
COVERAGE := COVERAGE_FILE=$(COVERAGE_DIR)/data $(BIN)/python -m coverage
NATIVE_SLOW := tests/test_hardening.py tests/test_redis_failures.py tests/test_redis_limits.py \
	tests/test_recycle.py tests/test_scaffold.py
TEST_PARTS := test-part-native test-part-native-slow test-part-pure test-part-dist \
	test-part-bench test-part-docs
.PHONY: $(TEST_PARTS)

test: install redis-server
	rm -rf $(COVERAGE_DIR) && mkdir -p $(COVERAGE_DIR)
	$(MAKE) --no-print-directory -j $(words $(TEST_PARTS)) -O $(TEST_PARTS)
	$(COVERAGE) combine -q
	$(COVERAGE) report
	$(COVERAGE) json -q -o $(COVERAGE_DIR)/coverage.json
	$(BIN)/python scripts/coverage-floors $(COVERAGE_DIR)/coverage.json

# The parts of `make test` (run them through it: it prepares the coverage folder).
test-part-native:
	@echo "== make test: the suite, compiled kernels (but NATIVE_SLOW)"
	$(COVERAGE) run -m pytest $(addprefix --ignore=,$(NATIVE_SLOW)) $(PYTEST_ARGS)

test-part-native-slow:
	@echo "== make test: the suite, compiled kernels: NATIVE_SLOW"
	$(COVERAGE) run -m pytest $(NATIVE_SLOW) $(PYTEST_ARGS)

# The pure part leaves out the tests marked "runtime" (pyproject.toml): they test what is
# around the kernels, which is the same code in both modes, and the native part runs them.
test-part-pure:
	@echo "== make test: the suite, pure Python (A6_NO_EXTENSIONS=1), runtime tests left to the native part"
	A6_NO_EXTENSIONS=1 $(COVERAGE) run -m pytest -m "not runtime" $(PYTEST_ARGS)

test-part-dist:
	@echo "== make test: the release (sdist, native and pure wheels, each installed and called)"
	$(BIN)/python scripts/check-dist

test-part-bench:
	@echo "== make test: every microbenchmark once"
	$(BIN)/python -m pytest bench --benchmark-disable -q -p no:cacheprovider

test-part-docs:
	@echo "== make test: the documentation site (mkdocs build --strict)"
	$(MKDOCS_BUILD)

test-native: install redis-server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-pure: install redis-server
	A6_NO_EXTENSIONS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# sdist, a native wheel built from it and a pure wheel, each installed into a fresh venv
# without Cython and called over the socket (about a minute: one compile of the kernels).
test-dist: install
	$(BIN)/python scripts/check-dist

# A flake check: the suite under CPU load (STRESS_BUSY spinning processes) in random
# order, STRESS_RUNS times in a row, alternating native and pure (see scripts/stress).
test-stress: install redis-server
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

# The documentation site (mkdocs.yml, docs/) into build/site. --strict: a warning, a broken
# link or anchor, a reference that does not resolve fails the build (never add --quiet:
# it hides the warnings from the strict check too, and a broken site builds).
MKDOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(CURDIR)/build/site

docs: install
	$(MKDOCS_BUILD)
	@echo "the site is in build/site (index.html)"

lint: install
	$(BIN)/ruff check src tests plugins bench
	$(BIN)/ruff format --check src tests plugins bench
	$(BIN)/mypy

bench: install
	$(BIN)/python -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,mean,ops

# Coverage-guided differential fuzzing of the codec twins (fuzz/README.md): each target
# runs FUZZ_RUNS inputs or FUZZ_TIME seconds (0: no time limit), one after the other,
# against an ASan + libFuzzer build of the kernels in build/fuzz (clang, installed with
# apt-get when missing and root). The corpora grow in build/fuzz/corpus/, crashes go to
# build/fuzz/artifacts/.
FUZZ_TARGETS ?= prepare_conf_req http_req_call_req http_resp_call_req extra_info_resp err_resp frame_splitter
FUZZ_RUNS ?= 1000000
FUZZ_TIME ?= 0
FUZZ_ARGS ?=
FUZZ_DIR := build/fuzz

$(VENV)/.installed-fuzz: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	touch $@

$(FUZZ_DIR)/lib/.built: $(VENV)/.installed-fuzz fuzz/build_native.py \
		$(wildcard src/a6native/*.pyx src/a6native/*.pxd src/a6native/*.pxi src/a6native/*.py)
	@command -v clang >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -q clang; } \
		|| { echo "make fuzz needs clang (Debian: apt-get install clang)"; exit 1; }
	$(BIN)/python -m fuzz.build_native $(FUZZ_DIR)/lib
	touch $@

fuzz: $(FUZZ_DIR)/lib/.built
	$(BIN)/python -m fuzz.seeds $(FUZZ_DIR)/seeds
	@set -e; for target in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$target $(FUZZ_DIR)/artifacts; \
		echo "fuzz: $$target"; \
		$(BIN)/python -m fuzz.run $$target -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_TIME) \
			-print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$$target- $(FUZZ_ARGS) \
			$(FUZZ_DIR)/corpus/$$target $(FUZZ_DIR)/seeds/$$target; \
	done

clean:
	rm -rf build $(VENV) src/*.egg-info src/a6native/*.c src/a6native/*.so
