# QuantBench developer entry points. Everything installs into ignored folders of the repo (.venv, ...).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help venv test test-unit crds dashboards lint fmt validate demo clean
GSM8K_DIR ?= ../shared/datasets/gsm8k

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

$(BIN)/.installed: operator/pyproject.toml loadgen/pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e loadgen -e operator -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed ## create .venv with the operator, loadgen and dev tools

test: venv cluster-bin node-setup vllm-env accuracy-env test-models demo-models images ## run the whole test suite
	$(BIN)/pytest

test-unit: venv ## run only the tests that need no external server
	$(BIN)/pytest -m "not cluster and not vllm and not gpu and not images"

crds: venv ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(BIN)/quantbench crd > crds/quantbench.dev_quantbenchmarks.yaml
	cp crds/quantbench.dev_quantbenchmarks.yaml charts/quantbench/crds/

dashboards: venv ## regenerate the chart's Grafana dashboards (charts/quantbench/files/dashboards) from quantbench.dashboards
	$(BIN)/quantbench dashboards --out charts/quantbench/files/dashboards

lint: venv ## ruff, mypy and the import layers (lint-imports, contracts in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

validate: venv ## validate every example spec
	$(BIN)/quantbench validate examples/*.yaml

demo: venv vllm-env accuracy-env demo-models ## the main job on the embedded default: quantbench run examples/local.yaml
	QUANTBENCH_VLLM_PYTHON=.venv-vllm/bin/python QUANTBENCH_ACCURACY_PYTHON=.cache/venv-accuracy/bin/python \
		$(BIN)/quantbench run examples/local.yaml --gsm8k $(GSM8K_DIR) --out results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# --- test control plane (tests/cluster): etcd, kube-apiserver, controller-manager, scheduler, kwok ---
.PHONY: cluster-bin cluster-up cluster-down node-setup test-node bench-node

cluster-bin: ## build (or reuse) the control-plane binaries into tests/cluster/bin
	bash tests/cluster/build.sh

node-setup: ## Debian's containerd, runc, CNI plugins and iptables for the real node (root; skipped when present)
	bash tests/cluster/node/setup.sh

# NODE=1 adds the real node (kubelet + containerd, pool cpu-real) beside the kwok pools
cluster-up: venv cluster-bin $(if $(NODE),node-setup) ## start the test control plane in the background (NODE=1: with a real node); prints export KUBECONFIG=...
	@$(BIN)/python -m tests.cluster up $(if $(NODE),--node)

test-node: venv cluster-bin node-setup vllm-env accuracy-env test-models images ## the real node's tests (pods, probes, Service DNS, API access, logs) and the end-to-end run (tests/e2e)
	$(BIN)/pytest -m node tests/cluster tests/e2e

bench-node: venv cluster-bin node-setup ## real node: start -> Ready, stop, memory (root)
	$(BIN)/python -m tests.cluster.node.bench_node

cluster-down: venv ## stop the control plane started by cluster-up
	@$(BIN)/python -m tests.cluster down

# --- GPU roofline probe (operator/quantbench/probe) ---
PROBE_CONFIG ?= operator/quantbench/probe/reference/llama-3.1-8b-instruct.config.json
PROBE_GPU ?= h100-sxm
# An interpreter with torch + CUDA (e.g. the vLLM image's python3); the repo's .venv has no torch.
PROBE_PY ?= $(BIN)/python
.PHONY: test-probe probe-floors bench-probe

test-probe: venv ## probe tests (shapes, floors, crossover, result, CLI); GPU ones skip without CUDA
	$(BIN)/pytest tests/probe

probe-floors: venv ## datasheet floors of PROBE_CONFIG on PROBE_GPU (no GPU needed)
	$(BIN)/quantbench probe --model-config $(PROBE_CONFIG) --floors-only --gpu $(PROBE_GPU)

bench-probe: ## measure bandwidth, step times per precision and crossovers on this machine's GPU
	mkdir -p results
	PYTHONPATH=operator:loadgen $(PROBE_PY) -m quantbench.probe --model-config $(PROBE_CONFIG) \
		--out results/probe.json --markdown results/probe.md

# --- accuracy runner, analysis and report (loadgen/quantbench_loadgen/accuracy, quantbench.analysis, quantbench.report) ---
.PHONY: accuracy-env test-accuracy test-report report-demo bench-screening

accuracy-env: ## lm-eval environment of the accuracy runner (.cache/venv-accuracy; lm-eval cannot share .venv)
	bash tests/accuracy/setup.sh

test-accuracy: venv accuracy-env ## statistics, summary and accuracy tests (the lm-eval e2e needs the vLLM fixture)
	$(BIN)/pytest tests/analysis tests/accuracy

test-report: venv ## report tests, including the render in headless Chromium (apt-get install chromium)
	$(BIN)/pytest tests/report

bench-screening: venv vllm-env accuracy-env demo-models ## a screen (one prefill) against generating the answer, SmolLM2 on the vLLM CPU server
	$(BIN)/python -m tests.accuracy.bench_screening --model smollm2

report-demo: venv ## a sample report (out/report-demo/report/report.{md,html}) from a hand-made results folder
	$(BIN)/python -m tests.analysis.builders out/report-demo/results
	$(BIN)/quantbench report out/report-demo/results --out out/report-demo/report

# --- real vLLM CPU servers and tiny local models (tests/vllm, tests/models, tests/fixtures/vllm.py) ---
.PHONY: vllm-env test-models demo-models test-vllm bench-vllm

vllm-env: ## vLLM CPU environment (.venv-vllm; reused when complete)
	bash tests/vllm/setup.sh

test-models: vllm-env ## build (or reuse) the tiny models in every precision into .cache/models/tiny-llama
	.venv-vllm/bin/python -m tests.models build --out .cache/models/tiny-llama > /dev/null

demo-models: vllm-env ## build (or reuse) SmolLM2-135M-Instruct in BF16, AWQ-INT4, INT8-W8A8 (.cache/models/smollm2-135m)
	QUANTBENCH_GSM8K_DIR=$(GSM8K_DIR) .venv-vllm/bin/python -m tests.models build --model smollm2 \
		--out .cache/models/smollm2-135m > /dev/null

test-vllm: venv vllm-env ## streaming completions/chat/metrics against real vLLM CPU servers per precision
	$(BIN)/pytest -m vllm tests/vllm

bench-vllm: venv vllm-env ## per precision: server start seconds, memory (PSS), first-token latency, decode rate
	$(BIN)/python -m tests.vllm.bench_startup

# --- operator (quantbench.handlers, plan, manifests, charts/quantbench) ---
.PHONY: test-operator operator-run bench-operator bench

test-operator: venv cluster-bin ## operator unit tests and its integration tests on the test control plane
	$(BIN)/pytest tests/operator

operator-run: venv ## run the operator against $$KUBECONFIG, every namespace (make cluster-up first for a local one)
	$(BIN)/quantbench operator --all-namespaces --verbose

bench-operator: venv cluster-bin ## apply -> servers latency; operator CPU/RSS with 50 QuantBenchmarks in flight
	$(BIN)/python -m tests.operator.bench_operator

bench: bench-operator bench-loadgen bench-node bench-sequential

# --- load generator (loadgen/quantbench_loadgen: streaming client, workloads, datasets, live metrics) ---
.PHONY: test-loadgen bench-loadgen bench-sequential

test-loadgen: venv ## load-generator tests against the scripted server (-m vllm ones need test-models)
	$(BIN)/pytest tests/loadgen

bench-loadgen: venv vllm-env ## timing error vs a scripted server; max rate vs vllm bench serve (QB_BENCH_QUICK=1)
	$(BIN)/python -m tests.loadgen.bench_loadgen

bench-sequential: venv ## the sequential accuracy design by simulation: error rate, expected questions vs fixed
	$(BIN)/python -m tests.loadgen.sequential_figures

# --- container images (images/): operator, jobs, vllm-cpu (OCI archives in build/images) ---
.PHONY: images images-setup test-images

images-setup: ## install podman, buildah, runc, mmdebstrap, containerd from Debian (root; skipped when present)
	bash images/setup.sh

images: venv ## build the images with podman on a Debian base (root); skipped when their inputs are unchanged
	bash images/build.sh

test-images: venv images ## run each built image (podman) and import the archives into a private containerd
	$(BIN)/pytest -m images tests/images
