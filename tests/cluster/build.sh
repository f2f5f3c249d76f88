#!/usr/bin/env bash
# Build the control-plane binaries used by the cluster tests from Go modules:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and, for the real node, kubelet and
# kube-proxy (one Go module, one `go build` so shared packages compile once), kwok, helm and CoreDNS (the
# real node's cluster DNS, with only the plugins it needs). Idempotent: a stamp file records the
# pinned versions and nothing is rebuilt while it matches and every binary is present.
#
#   bash tests/cluster/build.sh            # build or reuse
#   FORCE=1 bash tests/cluster/build.sh    # rebuild
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"   # kube-apiserver, controller-manager, scheduler, kubectl
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v4.3.1}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
# etcd comes from the version k8s.io/kubernetes itself requires (go.etcd.io/etcd/server/v3).
GO_MIN_MINOR=26
GO_TOOLCHAIN="${GO_TOOLCHAIN:-go1.26.8}"   # fetched through the module proxy when the local Go is older

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${CLUSTER_BIN_DIR:-$here/bin}"
work="${CLUSTER_BUILD_DIR:-$here/.work/gobuild}"
stamp="$bin/.versions"
want="k8s=$K8S_VERSION kwok=$KWOK_VERSION helm=$HELM_VERSION coredns=$COREDNS_VERSION"
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kubelet kube-proxy kwok helm coredns)

log() { printf '[cluster-bin] %s\n' "$*" >&2; }

all_present() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]
}

if [[ -z "${FORCE:-}" ]] && all_present; then
  log "binaries for $want already in $bin"
  exit 0
fi

command -v go >/dev/null || { log "error: Go is required on PATH (Debian: apt-get install golang-go)"; exit 1; }
go_minor="$(GOTOOLCHAIN=local go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
if (( go_minor < GO_MIN_MINOR )); then
  # Go >= 1.21 fetches a newer toolchain through the module proxy when asked to.
  (( go_minor >= 21 )) || { log "error: Go 1.21+ is required on PATH (found $(go env GOVERSION))"; exit 1; }
  export GOTOOLCHAIN="$GO_TOOLCHAIN"
  log "Go $(GOTOOLCHAIN=local go env GOVERSION) is too old for Kubernetes $K8S_VERSION: using $GOTOOLCHAIN"
fi

out="$work/out"   # built here, then renamed into $bin: running binaries keep working
rm -rf "$out"
mkdir -p "$bin" "$work" "$out"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0
ldflags="-s -w"
start=$SECONDS

# staging modules are published as k8s.io/<name> v0.<minor>.<patch>
staging_version="v0.${K8S_VERSION#v1.}"

# --- kwok and helm: small modules with the k8s.io libraries they pin. They build in the background
# while Kubernetes builds, which fills the cores during its long single-threaded link steps.
build_tool() { # name module-path package version [extra ldflags]
  local name="$1" module="$2" pkg="$3" version="$4" dir="$work/$1-$4" t0=$SECONDS
  mkdir -p "$dir"
  printf 'module quantbench.dev/cluster-bin/%s\n\ngo 1.%s.0\n\nrequire %s %s\n' \
    "$name" "$GO_MIN_MINOR" "$module" "$version" >"$dir/go.mod"
  log "building $name $version"
  (cd "$dir" && go build -trimpath -ldflags="$ldflags${5:+ $5}" -o "$out/$name" "$pkg")
  log "$name built in $((SECONDS - t0)) s"
}
# CoreDNS: a main package of our own that links only the plugins the node's DNS uses (the full binary
# pulls in every cloud SDK). The order of `Directives` is CoreDNS's own plugin order.
build_coredns() {
  local dir="$work/coredns-$COREDNS_VERSION" t0=$SECONDS
  mkdir -p "$dir"
  printf 'module quantbench.dev/cluster-bin/coredns\n\ngo 1.%s.0\n\nrequire github.com/coredns/coredns %s\n' \
    "$GO_MIN_MINOR" "$COREDNS_VERSION" >"$dir/go.mod"
  cat >"$dir/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
  log "building coredns $COREDNS_VERSION (bind, ready, health, errors, log, loadbalance, cache, kubernetes)"
  (cd "$dir" && go build -trimpath -ldflags="$ldflags -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    -o "$out/coredns" .)
  log "coredns built in $((SECONDS - t0)) s"
}
(
  build_tool kwok sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
  build_tool helm helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm "$HELM_VERSION" \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  build_coredns
) &
tools_pid=$!
trap 'kill "$tools_pid" 2>/dev/null || true' EXIT

# --- Kubernetes + etcd: one throwaway module that requires k8s.io/kubernetes -----------------------
k8s_dir="$work/kubernetes-$K8S_VERSION"
mkdir -p "$k8s_dir"
k8s_mod="$(cd "$k8s_dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p')"
[[ -f "$k8s_mod" ]] || { log "error: could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
mapfile -t staging < <(sed -nE 's#^\s*(k8s\.io/[A-Za-z0-9._-]+) => \./staging/src/.*#\1#p' "$k8s_mod" | sort -u)
(( ${#staging[@]} > 10 )) || { log "error: no staging modules found in $k8s_mod"; exit 1; }
{
  echo "module quantbench.dev/cluster-bin/kubernetes"
  echo
  echo "go 1.$GO_MIN_MINOR.0"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $staging_version"; done
  echo ")"
} >"$k8s_dir/go.mod"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
k8s_ldflags="$ldflags"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
log "building kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kubelet kube-proxy ($K8S_VERSION)"
(
  cd "$k8s_dir"
  go build -trimpath -ldflags="$k8s_ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    go.etcd.io/etcd/server/v3
)
# go names the etcd binary after its package path without the major version: .../server/v3 -> server
mv -f "$out/server" "$out/etcd"
log "kubernetes + etcd built in $((SECONDS - start)) s"
wait "$tools_pid" || { log "error: building kwok, helm or coredns failed (see the messages above)"; exit 1; }
trap - EXIT

for b in "${binaries[@]}"; do mv -f "$out/$b" "$bin/$b"; done
rm -f "$bin/server"
echo "$want" >"$stamp"
log "all binaries ready in $bin after $((SECONDS - start)) s"
