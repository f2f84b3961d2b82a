#!/usr/bin/env bash
# In-cluster e2e on kind, for hosts with Docker (needs docker, kind, kubectl,
# cargo): build the operator image, deploy config/default with it, run the
# e2e tests against the deployed operator, and always delete the cluster.
#
#   e2e/kind/run.sh [-- extra test-binary args, e.g. a test name filter]
#
# Env: KIND_CLUSTER_NAME (default connectors-e2e), KIND_NODE_IMAGE (optional).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CLUSTER="${KIND_CLUSTER_NAME:-connectors-e2e}"
IMAGE="connectors-operator:e2e"
NS="connectors-system"
DEPLOY="connectors-operator"

for tool in docker kind kubectl cargo; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 1; }
done

KUBECONFIG="$(mktemp)"
export KUBECONFIG
cleanup() {
  local rc=$?
  trap '' INT TERM
  kind delete cluster --name "$CLUSTER" || true
  rm -f "$KUBECONFIG"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

kind create cluster --name "$CLUSTER" --config "$HERE/cluster.yaml" --kubeconfig "$KUBECONFIG" \
  ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 180s

docker build -t "$IMAGE" "$REPO"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# Server-side apply: CRDs can exceed the client-side last-applied annotation.
kubectl apply --server-side -k "$REPO/config/default"
kubectl -n "$NS" set image "deployment/$DEPLOY" "*=$IMAGE"
# The image exists only inside the kind node, never pull it.
kubectl -n "$NS" patch "deployment/$DEPLOY" --type=json \
  -p '[{"op":"add","path":"/spec/template/spec/containers/0/imagePullPolicy","value":"IfNotPresent"}]'
if ! kubectl -n "$NS" rollout status "deployment/$DEPLOY" --timeout=180s; then
  kubectl -n "$NS" describe deployment "$DEPLOY" || true
  kubectl -n "$NS" describe pods || true
  kubectl -n "$NS" logs "deployment/$DEPLOY" --all-containers --tail=100 || true
  exit 1
fi

cd "$REPO"
[[ "${1:-}" == "--" ]] && shift
E2E_OPERATOR_MODE=in-cluster cargo test -p connectors-e2e -- --test-threads=2 "$@"
