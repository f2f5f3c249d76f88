#!/usr/bin/env bash
# Debian packages the real node of the test cluster needs: containerd (the CRI runtime), runc, the CNI
# plugins (bridge, host-local, portmap, loopback) and iptables (kube-proxy's rules, inside the node's own
# network namespace). Idempotent: installs only what is missing; needs root. Services are not started:
# the tests run their own containerd with a private configuration and state.
#
#   bash tests/cluster/node/setup.sh
set -euo pipefail

log() { printf '[node-setup] %s\n' "$*" >&2; }

declare -A want=(
  [containerd]=/usr/bin/containerd
  [runc]=/usr/sbin/runc
  [containernetworking-plugins]=/usr/lib/cni/bridge
  [iptables]=/usr/sbin/iptables
)
need=()
for pkg in "${!want[@]}"; do
  [[ -x "${want[$pkg]}" ]] || need+=("$pkg")
done
if ((${#need[@]} == 0)); then
  log "containerd, runc, CNI plugins and iptables already installed"
  exit 0
fi
if ((EUID != 0)); then
  log "error: installing ${need[*]} needs root (apt-get)"
  exit 1
fi
log "apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for pkg in "${!want[@]}"; do
  [[ -x "${want[$pkg]}" ]] || { log "error: $pkg installed but ${want[$pkg]} is missing"; exit 1; }
done
log "installed ${need[*]}"
