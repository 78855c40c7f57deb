# Two entry points for a fresh machine: `make reproduce` and `make test`. Both (re)create
# .venv from the hash-pinned lock in envs/ when it is missing or the lock changed.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# pytest-xdist workers for the tests. Three on a 2-core machine: most of the suite's time is spent
# waiting (job start-up, SLURM's polls, Docker): one worker used 0.65 of a core, two 1.13 to 1.25
# cores, three 1.35 (0.96x the time of two), and the SLURM test, which mostly waits, holds a
# worker for 300-400 s (README, "Tests").
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk 1
# The stamp's name carries the lock's hash, so a changed lock makes the venv stale.
STAMP := $(VENV)/.installed-$(shell cat envs/requirements.lock pyproject.toml | sha1sum | cut -c1-12)

export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: reproduce reproduce-all test test-fast report lock venv clean gpu-check check verify

# Another run than the default: make reproduce CONFIG=config/photos.yaml (its results: results/photos/).
CONFIG ?=
CONFIG_ARGS := $(if $(CONFIG),--configfile $(CONFIG))

venv: $(STAMP)

$(STAMP): envs/requirements.lock pyproject.toml
	@echo ">> creating $(VENV) from envs/requirements.lock (first time: a few minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# (pip warns once per package about this machine's unused local index folders: noise)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	  -r envs/requirements.lock 2>&1 | { grep -v "^WARNING: Location '" || true; }; \
	  test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

reproduce: venv
	$(BIN)/kdconcepts check --config-only $(CONFIG_ARGS)
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete $(CONFIG_ARGS)
	$(BIN)/snakemake --report results/$(RUN)/report.html $(CONFIG_ARGS)
	@echo ">> results/$(RUN)/summary.md, results/$(RUN)/report.html; check it with: make verify$(if $(CONFIG), CONFIG=$(CONFIG))"

# The default, the photographs and the logit student, each in its own tree (results/<run>/; the
# extended run takes the default's trained networks and maps from the shared store and cache),
# then one summary that stacks their verdicts: results/summary.md.
reproduce-all: venv
	$(MAKE) --no-print-directory reproduce
	$(MAKE) --no-print-directory reproduce CONFIG=config/photos.yaml
	$(MAKE) --no-print-directory reproduce CONFIG=config/extended.yaml
	$(BIN)/kdconcepts summarize default photos extended --out results/summary.md

# Did the run reproduce its reference (reference/<run>/)? Writes results/<run>/verify.md, and the
# report again with the answer on its front page. RUN: the run's name (default: default).
RUN ?= $(if $(CONFIG),$(basename $(notdir $(CONFIG))),default)
verify: venv
	$(BIN)/kdconcepts verify $(RUN); status=$$?; \
	  $(BIN)/snakemake --report results/$(RUN)/report.html $(CONFIG_ARGS) > /dev/null 2>&1 || true; exit $$status

# Is the run complete and intact (every output there, readable, as its job made it)? What to remake.
check: venv
	$(BIN)/kdconcepts check $(CONFIG_ARGS)

test: venv
	$(PYTEST) --durations=15

test-fast: venv
	$(PYTEST) -m "not slow" --durations=15

# The CUDA path in one command (benchmarks/gpu_check.py): about 8 min on one H100-class GPU;
# without CUDA one line and exit 0. CPU=1: a tiny version of every step on the CPU.
gpu-check: venv
	$(BIN)/python benchmarks/gpu_check.py $(if $(CPU),--cpu) --out results/gpu_check

# One report per finished run (results/<run>/report.html), each with its own config files.
report: venv
	@for made in results/*/run.json; do \
	  test -f "$$made" || continue; \
	  args=$$($(BIN)/python -c "import json, sys; print(' '.join('--configfile ' + f for f in json.load(open(sys.argv[1]))['config_files'] if f != 'config/config.yaml'))" "$$made"); \
	  echo ">> $$(dirname $$made)/report.html"; \
	  $(BIN)/snakemake --report $$(dirname $$made)/report.html $$args || exit 1; \
	done

lock: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip-tools
	$(BIN)/pip-compile --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links -o envs/requirements.lock envs/requirements.in

clean:
	rm -rf results logs .snakemake
