#!/usr/bin/env bash
# Create the accuracy runner's environment: quantbench-loadgen with its `accuracy` extra (lm-eval's API
# client models and a tokenizer library; no torch) in its own virtualenv, .cache/venv-accuracy.
#
# Why not the main .venv: lm-eval's report writer (pytablewriter -> typepy[datetime]) pins
# python-dateutil < 3, while the kubernetes client the operator uses needs python-dateutil >= 3. The
# accuracy runner is a Job-side program (like the load generator) and needs no operator code, so it gets
# an environment of its own, exactly as the job image has. Tests call it as a subprocess:
#   .cache/venv-accuracy/bin/python -m quantbench_loadgen.accuracy ...
#
# Idempotent: an environment whose stamp matches loadgen/pyproject.toml and that imports cleanly is reused.
# Usage: tests/accuracy/setup.sh            (ACCURACY_VENV=... to put the environment elsewhere)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${ACCURACY_VENV:-$ROOT/.cache/venv-accuracy}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.installed"
STAMP_TEXT="$(sha256sum "$ROOT/loadgen/pyproject.toml" | cut -c1-16) accuracy-v1"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[accuracy-env] %s\n' "$*" >&2; }

check_env() {
  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$VENV/bin/python" - <<'EOF'
import lm_eval, transformers  # noqa: F401
from importlib.metadata import version
import quantbench_loadgen.accuracy.runner  # noqa: F401
print(f"lm-eval {version('lm-eval')} transformers {transformers.__version__}")
EOF
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]] && versions="$(check_env 2>/dev/null)"; then
  log "reusing $VENV ($versions)"
  exit 0
fi

start=$(date +%s)
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e "$ROOT/loadgen[accuracy]"
check_env >&2
echo "$STAMP_TEXT" >"$STAMP"
log "ready in $(($(date +%s) - start)) s: $VENV"
