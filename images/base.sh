#!/usr/bin/env bash
# The base image `make images` builds on: a Debian bookworm root filesystem made by
# `mmdebstrap --variant=minbase` from Debian packages only (Python 3.11 with venv, CA certificates and the
# shared libraries vLLM's CPU backend loads), imported into podman's storage as $BASE_IMAGE.
# The Dockerfiles' default base (python:3.11-slim-bookworm) is the same Debian release and Python minor.
# Idempotent: skipped when the image exists with this script's package list (label quantbench.base).
# Usage: images/base.sh [IMAGE]       (root; CONTAINERS_CONF as set by images/build.sh)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${1:-localhost/quantbench/base:bookworm}"
SUITE=bookworm
PACKAGES=(python3 python3-venv ca-certificates libnuma1 libgomp1)
# The host's apt sources when it runs bookworm (its mirror and proxy settings apply); else Debian's default.
SOURCES="${BASE_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
KEY="$SUITE ${PACKAGES[*]} base-v1"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers/containers.conf}"

have="$(podman image inspect --format '{{index .Labels "quantbench.base"}}' "$IMAGE" 2>/dev/null || true)"
if [[ "$have" == "$KEY" ]]; then
  exit 0
fi

mirror=()
if [[ -f "$SOURCES" ]] && grep -q "$SUITE" "$SOURCES"; then
  mirror=("$SOURCES")
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "[images] mmdebstrap --variant=minbase $SUITE (${PACKAGES[*]})" >&2
mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --aptopt='Acquire::Retries "3"' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  "$SUITE" "$tmp/rootfs.tar" "${mirror[@]}"
podman import --quiet \
  --change "LABEL quantbench.base=\"$KEY\"" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  "$tmp/rootfs.tar" "$IMAGE" >/dev/null
echo "[images] base $IMAGE in $(($(date +%s) - start)) s" >&2
