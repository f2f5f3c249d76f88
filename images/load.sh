#!/usr/bin/env bash
# Import the images `make images` built (build/images/<name>.tar, OCI archives) into a containerd, in the
# k8s.io namespace where the kubelet's CRI finds them: no registry involved. An image the runtime already
# holds with the same manifest digest is skipped. Pods then use the chart's default names
# (quantbench/operator:<version>, ...) with imagePullPolicy IfNotPresent or Never.
# Usage: images/load.sh SOCKET [NAME...]      (default: every archive in build/images; root)
# Environment: IMAGES_OUT (build/images), CTR (ctr), CTR_NAMESPACE (k8s.io)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${IMAGES_OUT:-$(dirname "$HERE")/build/images}"
CTR="${CTR:-ctr}"
NS="${CTR_NAMESPACE:-k8s.io}"
sock="${1:?usage: images/load.sh CONTAINERD_SOCKET [NAME...]}"
shift
[[ -S "$sock" ]] || { echo "images/load.sh: no containerd socket at $sock" >&2; exit 1; }
names=("$@")
if ((${#names[@]} == 0)); then
  for archive in "$OUT"/*.tar; do
    [[ -f "$archive" ]] && names+=("$(basename "$archive" .tar)")
  done
fi
((${#names[@]})) || { echo "images/load.sh: no archives in $OUT (run make images)" >&2; exit 1; }

# "REF DIGEST" of the one image in an OCI archive, from its index.json.
archive_ref() {
  tar -xOf "$1" index.json | python3 -c '
import json, sys
(m,) = json.load(sys.stdin)["manifests"]
print(m["annotations"]["org.opencontainers.image.ref.name"], m["digest"])'
}

for name in "${names[@]}"; do
  archive="$OUT/$name.tar"
  [[ -f "$archive" ]] || { echo "images/load.sh: no archive $archive (run make images)" >&2; exit 1; }
  read -r ref digest < <(archive_ref "$archive")
  have="$("$CTR" --address "$sock" -n "$NS" images ls "name==$ref" | awk 'NR > 1 {print $3}')"
  if [[ "$have" == "$digest" ]]; then
    echo "[images] $ref: already in $sock ($NS)" >&2
    continue
  fi
  start=$(date +%s)
  "$CTR" --address "$sock" -n "$NS" images import "$archive" >/dev/null
  echo "[images] $ref: imported into $sock ($NS) in $(($(date +%s) - start)) s" >&2
done
