#!/usr/bin/env bash
# Local Kubernetes control plane for e2e tests, built from source (no Docker):
# etcd + kube-apiserver + kube-controller-manager + kubectl, pinned in
# e2e/controlplane/go.mod, run by e2e/controlplane/cmd/localcluster.
#
#   e2e/cluster.sh build                  build binaries (cached by source hash)
#   e2e/cluster.sh bin-dir                print the binary dir (builds if needed)
#   e2e/cluster.sh up                     start a fresh cluster (replaces a running one)
#   e2e/cluster.sh down                   stop it (idempotent)
#   e2e/cluster.sh restart apiserver|etcd|controller-manager|all
#   e2e/cluster.sh sa-kubeconfig --namespace NS --name SA --out FILE
#   e2e/cluster.sh env                    print export lines: eval "$(e2e/cluster.sh env)"
#   e2e/cluster.sh with -- CMD ARGS...    build, up, run CMD, ALWAYS tear down; exits with CMD's code
#
# Environment: E2E_DIR (state dir, default <repo>/.e2e), CONNECTORS_E2E_CACHE
# (binary cache, default ${XDG_CACHE_HOME:-$HOME/.cache}/connectors-e2e).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CP="$HERE/controlplane"
CACHE="${CONNECTORS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connectors-e2e}"
E2E_DIR="${E2E_DIR:-$REPO/.e2e}"
# Bump when the build recipe below changes in a way the sources don't show.
RECIPE=1

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi

# Cache key: pins, Go sources, toolchain and recipe. Nothing else matters.
cache_key() {
  command -v go >/dev/null 2>&1 || die "go not found (need Go >= 1.26)"
  {
    echo "recipe=$RECIPE"
    go env GOVERSION GOOS GOARCH
    cd "$CP" && find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -not -path './bin/*' \
      | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -c1-16
}

bin_dir() { echo "$CACHE/$(cache_key)/bin"; }

build() {
  local key bin
  key="$(cache_key)"
  bin="$CACHE/$key/bin"
  [[ -f "$bin/.complete" ]] && return 0
  mkdir -p "$CACHE/$key"
  local tmp start=$SECONDS
  tmp="$(mktemp -d "$CACHE/$key/bin.tmp.XXXXXX")"
  chmod 755 "$tmp"
  # Version stamps as upstream's build sets them (kubectl version, /version).
  local ver V=k8s.io/component-base/version
  ver="$(grep -Eo 'k8s\.io/kubernetes v[0-9]+\.[0-9]+\.[0-9]+' "$CP/go.mod" | head -1 | cut -d' ' -f2)"
  [[ -n "$ver" ]] || die "cannot find the k8s.io/kubernetes version in $CP/go.mod"
  local major="${ver#v}"; major="${major%%.*}"
  local minor="${ver#v*.}"; minor="${minor%%.*}"
  log "building control plane $ver (cache key $key) into $bin ..."
  # One go build for all commands so shared packages compile once. Static
  # (CGO_ENABLED=0) like upstream release binaries; -s -w keeps them small.
  if ! (cd "$CP" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X $V.gitVersion=$ver -X $V.gitMajor=$major -X $V.gitMinor=$minor -X $V.gitTreeState=clean" \
      -o "$tmp/" ./cmd/...); then
    rm -rf "$tmp"
    die "build failed"
  fi
  touch "$tmp/.complete"
  # Atomic publish; if a concurrent build won the race, keep its result.
  mv -T "$tmp" "$bin" 2>/dev/null || rm -rf "$tmp"
  log "built in $((SECONDS - start))s"
  # Keep the three newest builds (~300 MB each); older ones are dead weight.
  ls -1dt "$CACHE"/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
}

localcluster() { "$(bin_dir)/localcluster" "$@"; }

up() {
  build
  mkdir -p "$E2E_DIR"
  local start=$SECONDS
  # localcluster up tears down whatever still runs in E2E_DIR first.
  localcluster up --dir "$E2E_DIR"
  log "up in $((SECONDS - start))s; KUBECONFIG=$E2E_DIR/kubeconfig"
}

down() {
  local start=$SECONDS bin
  bin="$(bin_dir)"
  if [[ -x "$bin/localcluster" ]]; then
    "$bin/localcluster" down --dir "$E2E_DIR"
  elif [[ -f "$E2E_DIR/state.json" ]]; then
    # Sources changed since up: use any built launcher, they all read state.json.
    local any
    any="$(ls -1d "$CACHE"/*/bin/localcluster 2>/dev/null | head -1)"
    [[ -n "$any" ]] || die "no localcluster binary to stop the cluster in $E2E_DIR"
    "$any" down --dir "$E2E_DIR"
  fi
  log "down in $((SECONDS - start))s"
}

print_env() {
  local bin
  bin="$(bin_dir)"
  echo "export E2E_DIR='$E2E_DIR';"
  echo "export KUBECONFIG='$E2E_DIR/kubeconfig';"
  echo "export PATH='$bin':\"\$PATH\";"
}

# with -- CMD...: the command runs in its own process group so that on
# INT/TERM, and after it exits, we can stop all of it (cargo, test binaries,
# anything they leaked) before tearing the cluster down. Teardown runs on
# every exit path.
CHILD=""
teardown() {
  local rc=$?
  trap '' INT TERM
  if [[ -n "$CHILD" ]] && kill -0 -- "-$CHILD" 2>/dev/null; then
    log "stopping leftover processes of the command (process group $CHILD)"
    kill -TERM -- "-$CHILD" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$CHILD" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$CHILD" 2>/dev/null || true
  fi
  if ! down; then
    log "teardown failed; processes may be left (see $E2E_DIR/pids)"
    ((rc == 0)) && rc=1
  fi
  exit "$rc"
}

with() {
  [[ "${1:-}" == "--" ]] && shift
  (($#)) || die "usage: cluster.sh with -- CMD [ARGS...]"
  trap teardown EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  up >&2
  export E2E_DIR KUBECONFIG="$E2E_DIR/kubeconfig" PATH="$(bin_dir):$PATH"
  set -m # job control on: the background job gets its own process group
  "$@" <&0 &
  CHILD=$!
  set +m
  local rc=0
  wait "$CHILD" || rc=$?
  log "command exited with $rc"
  exit "$rc"
}

cmd="${1:-}"
(($#)) && shift
case "$cmd" in
  build) build ;;
  bin-dir) build; bin_dir ;;
  up) up ;;
  down) down ;;
  restart)
    (($# == 1)) || die "usage: cluster.sh restart apiserver|etcd|controller-manager|all"
    build
    localcluster restart --dir "$E2E_DIR" "$1"
    ;;
  sa-kubeconfig) build; localcluster sa-kubeconfig --dir "$E2E_DIR" "$@" ;;
  env) build; print_env ;;
  with) with "$@" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
