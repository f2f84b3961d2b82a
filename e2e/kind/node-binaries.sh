#!/usr/bin/env bash
# Builds the node-side Kubernetes binaries (kubelet, kubeadm, kube-proxy,
# kube-scheduler) from e2e/kind/node (pinned like e2e/controlplane: the same
# k8s.io/kubernetes version), cached by a source hash exactly like
# e2e/cluster.sh, and prints the binary directory. kube-apiserver,
# kube-controller-manager, kubectl and etcd come from e2e/cluster.sh's cache.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/node"
CACHE="${CONNECTORS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connectors-e2e}/kind-node-bin"
RECIPE=1
log() { echo "node-binaries.sh: $*" >&2; }
die() { log "$*"; exit 1; }
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null 2>&1 || die "go not found (need Go >= 1.26)"
key="$({
  echo "recipe=$RECIPE"
  go env GOVERSION GOOS GOARCH
  cd "$SRC" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort | xargs sha256sum
} | sha256sum | cut -c1-16)"
bin="$CACHE/$key/bin"
if [[ ! -f "$bin/.complete" ]]; then
  mkdir -p "$CACHE/$key"
  tmp="$(mktemp -d "$CACHE/$key/bin.tmp.XXXXXX")"; chmod 755 "$tmp"
  ver="$(grep -Eo 'k8s\.io/kubernetes v[0-9]+\.[0-9]+\.[0-9]+' "$SRC/go.mod" | head -1 | cut -d' ' -f2)"
  major="${ver#v}"; major="${major%%.*}"; minor="${ver#v*.}"; minor="${minor%%.*}"
  V=k8s.io/component-base/version
  log "building kubelet, kubeadm, kube-proxy, kube-scheduler $ver (cache key $key) ..."
  start=$SECONDS
  if ! (cd "$SRC" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X $V.gitVersion=$ver -X $V.gitMajor=$major -X $V.gitMinor=$minor -X $V.gitTreeState=clean" \
      -o "$tmp/" ./cmd/...); then
    rm -rf "$tmp"; die "build failed"
  fi
  touch "$tmp/.complete"
  mv -T "$tmp" "$bin" 2>/dev/null || rm -rf "$tmp"
  log "built in $((SECONDS - start))s"
  ls -1dt "$CACHE"/*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf
fi
echo "$bin"
