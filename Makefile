# QuantBench developer entry points. Everything installs into ignored folders of the repo (.venv, ...).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help venv test test-unit crds lint fmt validate demo clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(BIN)/.installed: operator/pyproject.toml loadgen/pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e loadgen -e operator -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed ## create .venv with the operator, loadgen and dev tools

test: venv ## run the whole test suite
	$(BIN)/pytest

test-unit: venv ## run only the tests that need no external server
	$(BIN)/pytest -m "not cluster and not vllm and not gpu"

crds: venv ## regenerate crds/ from the pydantic models
	$(BIN)/quantbench crd > crds/quantbench.dev_quantbenchmarks.yaml

lint: venv ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

validate: venv ## validate every example spec
	$(BIN)/quantbench validate examples/*.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
