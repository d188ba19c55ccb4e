# custscore developer tasks. A fresh machine needs only Python 3.11+ (python3.11, else python3).
#
#   make demo    embedded broker + Valkey + worker + CDNOW replay
#   make test    the whole test suite, deploy/loadtest/packaging beside the rest (no test ran: fails)
#   make lint    ruff check + mypy (strict) + import-linter (layers: docs/design.md)
#   make faults  crash / rebalance / zombie / Redis / broker / bad-input / security tests (also in make test)
#   make soak    10-minute soak at half the measured maximum rate (SOAK_ARGS="--minutes 2")
#   make bench   benchmarks (`custscore bench`, the loadtest plug-in; else the benchmark-marked tests)
#   make evaluate  CDNOW holdout backtest: docs/evaluation.md, docs/evaluation/, README headline table

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON_BOOT ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
LINT_PATHS  := custscore config engine models streams loadtest tests
PYTEST_ARGS ?=
BENCH_ARGS  ?=
SOAK_ARGS   ?=

.PHONY: help venv demo test faults soak lint format bench evaluate stack-up stack-down stack-status clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install -e .[dev] (again only when pyproject.toml changed)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON_BOOT)" ]; then echo "make: need python3.11 or python3 on PATH" >&2; exit 1; fi
	@$(PYTHON_BOOT) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "make: $(PYTHON_BOOT) is older than Python 3.11" >&2; exit 1; }
	@if [ ! -x $(PY) ]; then echo "creating $(VENV) with $(PYTHON_BOOT)"; $(PYTHON_BOOT) -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: $(STAMP) ## embedded stack, worker, CDNOW replay and summary (Ctrl-C stops everything)
	$(VENV)/bin/custscore demo

test: $(STAMP) ## the test suite (deploy, loadtest, packaging: a 2nd pytest run beside the rest); exit 5 fails
	$(PY) tests/run_suite.py $(PYTEST_ARGS)

faults: $(STAMP) ## fault-injection, bad-input and security tests only (tests/reliability)
	$(PY) -m pytest -p no:cacheprovider tests/reliability $(PYTEST_ARGS)

soak: $(STAMP) ## soak: worker RSS, Redis memory and lag at half the max rate (SOAK_ARGS=...)
	$(PY) -m loadtest.soak $(SOAK_ARGS)

lint: $(STAMP) ## ruff check, mypy --strict and the import layers contract (pyproject.toml)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP) ## apply ruff format
	$(VENV)/bin/ruff format $(LINT_PATHS)

bench: $(STAMP) ## benchmarks: `custscore bench` (the loadtest plug-in) if installed, else pytest -m benchmark
	@if $(VENV)/bin/custscore bench --help >/dev/null 2>&1; then \
	  echo "$(VENV)/bin/custscore bench $(BENCH_ARGS)"; \
	  $(VENV)/bin/custscore bench $(BENCH_ARGS); \
	else \
	  echo "$(PY) -m pytest -p no:cacheprovider -m benchmark $(PYTEST_ARGS)"; \
	  rc=0; $(PY) -m pytest -p no:cacheprovider -m benchmark $(PYTEST_ARGS) || rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make bench: no benchmark-marked tests exist yet" >&2; fi; \
	  exit $$rc; \
	fi

# The CDNOW standard split (Fader, Hardie & Lee 2005): calibration through 1997-09-30, holdout
# to 1998-06-30. docs/evaluation.md is the report, its plots, metrics.json and the fitted
# params.json are in docs/evaluation/; the README's headline table is rendered from metrics.json.
EVALUATE_DIR ?= .custscore/evaluate
evaluate: $(STAMP) ## CDNOW holdout backtest (custscore evaluate): docs/evaluation.md + README table
	mkdir -p $(EVALUATE_DIR)
	$(VENV)/bin/custscore datasets cdnow --out $(EVALUATE_DIR)/cdnow.csv
	rm -rf docs/evaluation
	$(VENV)/bin/custscore evaluate $(EVALUATE_DIR)/cdnow.csv \
	  --calibration-end 1997-09-30T00:00:00Z --holdout-end 1998-06-30T00:00:00Z --fit \
	  --out docs/evaluation --doc docs/evaluation.md
	rm -f docs/evaluation/report.md docs/evaluation/report.html
	$(PY) -m custscore.evaluation.readme docs/evaluation/metrics.json README.md

stack-up: $(STAMP) ## start the embedded broker and Valkey in the background
	$(VENV)/bin/custscore stack up

stack-down: $(STAMP) ## stop them
	$(VENV)/bin/custscore stack down

stack-status: $(STAMP) ## what runs where, and whether it answers
	$(VENV)/bin/custscore stack status

clean: ## stop the embedded stack, remove caches, build output and the run directory
	@if [ -x $(VENV)/bin/custscore ]; then $(VENV)/bin/custscore stack down || true; fi
	rm -rf build dist .custscore .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -print \
	  | xargs rm -rf

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)

# Mutation testing of engine/ (docs/mutation.md): mutmut, from its own tool venv (it needs a
# newer click than faust-streaming allows), on a private copy of HEAD (never this checkout),
# the numba kernels run as plain Python. MUTATION_SAMPLE="" runs every mutant (hours on two
# cores); MUTANTS="engine.scoring.*" runs the named ones (globs) instead of the sample;
# MUTATION_ARGS="--deselect tests/engine/test_x.py::test_y" skips a test failing at HEAD.
MUTATION_DIR      ?= /tmp/custscore-mutation
MUTMUT_VENV       ?= /tmp/custscore-mutmut-venv
MUTATION_MODULES  ?= kernels,scoring,alerts,timeline,population,state
MUTATION_SAMPLE   ?= kernels=60,scoring=60,alerts=45,timeline=45,population=35,state=15
MUTATION_EXAMPLES ?= 10
MUTANTS           ?=
MUTATION_ARGS     ?=
MUTATION_SCRIPT    = $(CURDIR)/$(PY) $(CURDIR)/tests/engine/mutmut_workspace.py $(MUTATION_DIR)
MUTMUT_RUN         = NUMBA_DISABLE_JIT=1 MUTATION_MAX_EXAMPLES=$(MUTATION_EXAMPLES) \
                     $(MUTMUT_VENV)/bin/mutmut run --max-children 2

.PHONY: mutation
mutation: $(STAMP) ## mutation-test engine/ with mutmut on a private copy (docs/mutation.md)
	$(MUTATION_SCRIPT) --tool-venv $(MUTMUT_VENV) --modules $(MUTATION_MODULES) \
	  $(MUTATION_ARGS)
	cd $(MUTATION_DIR); \
	if [ -n "$(MUTANTS)" ]; then \
	  $(MUTMUT_RUN) $(MUTANTS); \
	elif [ -n "$(MUTATION_SAMPLE)" ]; then \
	  $(MUTMUT_RUN) 'engine.generate-only.*' >/dev/null 2>&1 || true; \
	  names=$$($(MUTATION_SCRIPT) --print-sample $(MUTATION_SAMPLE)); \
	  test -n "$$names"; \
	  $(MUTMUT_RUN) $$names; \
	else \
	  $(MUTMUT_RUN); \
	fi; \
	$(MUTMUT_VENV)/bin/mutmut results
