#!/usr/bin/env bash
# In-cluster e2e on kind: build the operator image from the Dockerfile (unchanged),
# install config/default with it as the README tells users, run the kind-only tests
# (e2e/tests/kind.rs) and a selection of the e2e tests against the deployed
# operator, and ALWAYS tear down (cluster, and in offline mode the dockerd this
# script started, with every host change it made).
#
#   e2e/kind/run.sh                 everything, then teardown (what `make test` runs)
#   e2e/kind/run.sh -- FILTER...    extra arguments for the kind test binary
#   e2e/kind/run.sh down            teardown of a run that was killed hard
#
# Modes (E2E_KIND_MODE):
#   offline (default where no docker daemon answers): installs docker.io (apt) if
#     missing, starts a private dockerd, builds every image locally (no registry:
#     e2e/kind/images.sh) and a node image replacing `kind build node-image`.
#   docker: a host with a working Docker daemon and registry access: the stock kind
#     node image (or KIND_NODE_IMAGE), stock base images for the Dockerfile.
#
# Env: KIND_CLUSTER_NAME (connectors-e2e), KIND_NODE_IMAGE (docker mode),
# CONNECTORS_E2E_CACHE (~/.cache/connectors-e2e), E2E_KIND_KEEP=1 (no teardown,
# for debugging; `e2e/kind/run.sh down` later).
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
source "$HERE/images.sh"

MODE="${E2E_KIND_MODE:-}"
if [[ -z "$MODE" ]]; then
  if command -v docker >/dev/null && [[ -z "${DOCKER_HOST:-}" ]] && docker info >/dev/null 2>&1 \
     && ! [[ -f "$STATE/dockerd.pid" ]]; then
    MODE=docker
  else
    MODE=offline
  fi
fi
NS=connectors-system
KUBECONFIG="$STATE/kubeconfig"
export KUBECONFIG

timings=()
phase() { # phase NAME CMD...: run and time one step
  local name=$1 start=$SECONDS; shift
  log "==> $name"
  "$@"
  timings+=("$(printf '%-18s %5ss' "$name" $((SECONDS - start)))")
}

teardown() {
  local rc=$?
  trap '' INT TERM
  # Best effort from here on: one failing step must not skip the others.
  set +e +o pipefail
  stop_child
  if [[ -n "${E2E_KIND_KEEP:-}" ]]; then
    log "E2E_KIND_KEEP set (exit code $rc): cluster and dockerd left running; e2e/kind/run.sh down stops them"
    exit "$rc"
  fi
  log "teardown (exit code $rc)"
  if command -v kind >/dev/null && { [[ "$MODE" == docker ]] || docker_running; }; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  [[ "$MODE" == offline ]] && stop_dockerd
  rm -f "$KUBECONFIG"
  if ((${#timings[@]})); then
    echo "kind stage timings:" >&2
    printf '  %s\n' "${timings[@]}" >&2
  fi
  exit "$rc"
}

diagnostics() {
  log "diagnostics"
  kubectl get nodes -o wide >&2 || true
  kubectl get pods -A -o wide >&2 || true
  kubectl -n "$NS" describe pods >&2 || true
  kubectl -n "$NS" logs -l app.kubernetes.io/part-of=connectors-operator --all-containers --tail=60 --prefix >&2 || true
  kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -40 >&2 || true
}

# The kubectl the e2e tests use: the pinned one of e2e/controlplane (same version
# as the cluster, kustomize built in).
use_pinned_kubectl() {
  local bin; bin="$("$REPO/e2e/cluster.sh" bin-dir)"
  mkdir -p "$STATE/bin"
  ln -sf "$bin/kubectl" "$STATE/bin/kubectl"
  export PATH="$STATE/bin:$PATH"
}

images_offline() {
  mkdir -p "$BUILD_TMP"
  build_debian_base
  build_node_image
  build_operator_image
  build_tools_image
}

images_docker() {
  docker build -t "$OPERATOR_IMAGE" "$REPO"
  # Tools: git + curl + the demo tool, on stock Debian.
  (cd "$REPO" && cargo build -q --locked -p connectors-operator --bin demo-tool)
  local ctx; ctx="$(mktemp -d)"
  cp "$REPO/target/debug/demo-tool" "$ctx/"
  printf 'FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends git curl ca-certificates && rm -rf /var/lib/apt/lists/*\nCOPY demo-tool /usr/local/bin/demo-tool\n' >"$ctx/Dockerfile"
  TOOLS_IMAGE="connectors-e2e/tools:$(hash_of "$ctx/demo-tool")"
  docker build -q -t "$TOOLS_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

create_cluster() {
  local config="$STATE/cluster.yaml" image_args=()
  cp "$HERE/cluster.yaml" "$config"
  if [[ "$MODE" == offline ]]; then
    # The node image has no kindnetd (a baked ptp conflist instead).
    printf 'networking:\n  disableDefaultCNI: true\n' >>"$config"
    image_args=(--image "$NODE_IMAGE")
  elif [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
    image_args=(--image "$KIND_NODE_IMAGE")
  fi
  kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  if ! kind create cluster --name "$CLUSTER" --config "$config" --kubeconfig "$KUBECONFIG" \
      "${image_args[@]}" --wait 240s; then
    docker ps -a >&2 || true
    docker exec "$CLUSTER-control-plane" journalctl -u kubelet --no-pager 2>/dev/null | tail -60 >&2 || true
    die "kind create cluster failed"
  fi
}

load_images() {
  kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$TOOLS_IMAGE"
}

# config/default exactly, with the image built here (kustomize `images`, in an
# overlay generated next to the kubeconfig; no other change).
deploy() {
  local overlay="$REPO/e2e/kind/.deploy"
  rm -rf "$overlay"; mkdir -p "$overlay"
  cat >"$overlay/kustomization.yaml" <<EOF
# Generated by e2e/kind/run.sh: config/default with the image built from the Dockerfile.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../../config/default
images:
- name: connectors-operator
  newName: ${OPERATOR_IMAGE%%:*}
  newTag: ${OPERATOR_IMAGE##*:}
EOF
  # Server-side: the CRDs exceed the client-side last-applied annotation.
  kubectl apply --server-side -k "$overlay" >/dev/null
  rm -rf "$overlay"
  # Not :latest, so imagePullPolicy defaults to IfNotPresent: the image is only
  # on the node. Check it, in case config/ ever pins a policy.
  local policies; policies="$(kubectl -n "$NS" get deploy -o jsonpath='{range .items[*].spec.template.spec.containers[*]}{.image} {.imagePullPolicy}{"\n"}{end}')"
  echo "$policies" | sed 's/^/  /' >&2
  echo "$policies" | grep -qv " IfNotPresent$" && die "an operator container would pull: $policies"
  local d
  for d in $(kubectl -n "$NS" get deploy -o name); do
    if ! kubectl -n "$NS" rollout status "$d" --timeout=240s; then
      diagnostics; die "$d did not become ready"
    fi
  done
}

run_tests() {
  cd "$REPO"
  export E2E_KIND=1 E2E_KIND_TOOLS_IMAGE="$TOOLS_IMAGE" E2E_OPERATOR_MODE=in-cluster
  # E2E_DIR names the local control plane (e2e/cluster.sh); a caller's value must not
  # make a test treat the kind cluster as that one.
  unset E2E_DIR
  local rc=0
  # The kind-only tests (ignored everywhere else, run explicitly here).
  bg_wait cargo test -q --locked -p connectors-e2e --test kind -- --ignored --test-threads=1 "$@" || rc=$?
  if ((rc == 0)) && (($# == 0)); then
    # The e2e tests that make sense on kind: they only talk to the apiserver
    # (see e2e/kind/README.md for the selection and why).
    bg_wait cargo test -q --locked -p connectors-e2e --test smoke --test crds -- --test-threads=2 || rc=$?
  fi
  ((rc == 0)) || diagnostics
  return "$rc"
}

main() {
  [[ "${1:-}" == "--" ]] && shift
  trap teardown EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  mkdir -p "$STATE" "$KIND_CACHE"
  # One run per machine at a time: the dockerd data root, the cluster name and
  # the host state are shared by every checkout.
  exec 9>"$KIND_CACHE/run.lock"
  if ! flock -n 9; then
    log "another e2e/kind/run.sh is running; waiting for it"
    flock 9
  fi
  log "mode: $MODE, Kubernetes $K8S_VERSION, kind $KIND_VERSION, state $STATE, cache $KIND_CACHE"
  if [[ "$MODE" == offline ]]; then
    phase dockerd start_dockerd
    phase kind-cli ensure_kind_cli
    phase images images_offline
  else
    command -v kind >/dev/null || phase kind-cli ensure_kind_cli
    phase images images_docker
  fi
  use_pinned_kubectl
  phase cluster create_cluster
  phase load load_images
  phase deploy deploy
  phase tests run_tests "$@"
}

case "${1:-}" in
  down)
    set +e +o pipefail
    MODE=offline
    export DOCKER_HOST="unix://$DOCKER_SOCK" PATH="$STATE/bin:$KIND_CACHE/tools/kind-$KIND_VERSION:$PATH"
    if docker_running; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
    stop_dockerd
    rm -f "$KUBECONFIG"
    ;;
  *) main "$@" ;;
esac
