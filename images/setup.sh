#!/usr/bin/env bash
# Install what `make images` needs on a Debian bookworm machine, as root: buildah and podman (build and
# run the images), runc (the runtime the project's containers.conf names; crun refuses a hybrid cgroup
# layout), mmdebstrap (the base image from Debian packages), containerd (its `ctr` imports the built
# images into a node's runtime, images/load.sh) and the CNI plugins podman's default network needs.
# Idempotent: installs only what is missing.
set -euo pipefail

want=(buildah podman runc mmdebstrap containerd containernetworking-plugins uidmap)
need=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "images/setup.sh: missing Debian packages ${need[*]}; run as root (or apt-get install them)" >&2
  exit 1
fi
echo "[images] apt-get install ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
