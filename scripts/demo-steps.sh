#!/usr/bin/env bash
# Runs inside `e2e/cluster.sh with` (KUBECONFIG and kubectl set); see scripts/demo.sh.
set -euo pipefail
port="${DEMO_TOOL_PORT:-18080}"
log_dir="$E2E_DIR/logs"
mkdir -p "$log_dir"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "installing the CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl create namespace connectors-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null

say "starting the demo tool on 127.0.0.1:$port and the operator"
target/debug/demo-tool "127.0.0.1:$port" 2>"$log_dir/demo-tool.log" &
target/debug/connectors-operator run --probe-interval 30 --probe-timeout 3 \
  --metrics-addr 127.0.0.1:18081 --namespace connectors-system \
  >"$log_dir/operator.log" 2>&1 &
operator=$!
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:18081/readyz && break; sleep 0.1; done
echo "operator log: $log_dir/operator.log; metrics: http://127.0.0.1:18081/metrics"

say "applying a ConnectorClass, Secrets and three Connectors (demo/cluster-demo.yaml)"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
sed "s/127.0.0.1:18080/127.0.0.1:$port/" demo/check-demo.yaml | kubectl apply -n demo -f -

say "waiting for the operator's verdicts"
kubectl wait -n demo connector/demo-git --for=condition=Ready --timeout=60s
kubectl wait -n demo connector/wrong-password --for=condition=AuthReady=false --timeout=60s
kubectl wait -n demo connector/tool-down --for=condition=LivenessReady=false --timeout=60s

say "kubectl get connectors,connectorclasses -A"
kubectl get connectors,connectorclasses -A
say "kubectl describe connector wrong-password -n demo"
kubectl describe connector wrong-password -n demo
say "kubectl describe connector tool-down -n demo (conditions)"
kubectl describe connector tool-down -n demo | sed -n '/Conditions:/,/Events:/p'

if [[ "${DEMO_KEEP:-}" == 1 ]]; then
  say "running; KUBECONFIG=$KUBECONFIG (Ctrl-C stops everything)"
  wait "$operator"
fi
