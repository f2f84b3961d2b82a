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
webhook_port="${DEMO_WEBHOOK_PORT:-18443}"
target/debug/connectors-operator run --probe-interval 30 --probe-timeout 3 \
  --metrics-addr 127.0.0.1:18081 --namespace connectors-system \
  --webhook-addr "127.0.0.1:$webhook_port" --webhook-hosts 127.0.0.1 \
  --allow-loopback-destinations \
  >"$log_dir/operator.log" 2>&1 &
operator=$!
for _ in $(seq 100); do curl -fsS -o /dev/null http://127.0.0.1:18081/readyz && break; sleep 0.1; done
echo "operator log: $log_dir/operator.log; metrics: http://127.0.0.1:18081/metrics"

say "registering the admission webhook (by URL: the operator runs as a local process)"
# config/webhook's configuration, pointed at the local process; the operator injects
# the CA bundle of the certificate it created in Secret connectors-operator-webhook-cert.
hook() { # name path resource scope
  printf -- '- name: %s\n  admissionReviewVersions: ["v1"]\n  sideEffects: None\n  failurePolicy: Ignore\n  timeoutSeconds: 5\n  clientConfig: {url: "https://127.0.0.1:%s%s"}\n  rules: [{apiGroups: [connectors.alauda.io], apiVersions: [v1alpha1], operations: [CREATE, UPDATE], resources: [%s], scope: %s}]\n' \
    "$1" "$webhook_port" "$2" "$3" "$4"
}
{ printf 'apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: connectors-operator}\nwebhooks:\n'
  hook vconnector.connectors.alauda.io /validate/connectors connectors Namespaced
  hook vconnectorclass.connectors.alauda.io /validate/connectorclasses connectorclasses Cluster
} | kubectl apply -f - >/dev/null
for _ in $(seq 100); do
  [[ -n "$(kubectl get validatingwebhookconfiguration connectors-operator -o jsonpath='{.webhooks[1].clientConfig.caBundle}')" ]] && break
  sleep 0.1
done

say "applying a ConnectorClass, Secrets and three Connectors (demo/cluster-demo.yaml)"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
sed "s/127.0.0.1:18080/127.0.0.1:$port/" demo/check-demo.yaml | kubectl apply -n demo -f -

say "admission: a Connector with a misspelt parameter is refused at apply time"
if printf '%s\n' 'apiVersion: connectors.alauda.io/v1alpha1' 'kind: Connector' 'metadata: {name: typo}' \
    'spec: {connectorClassName: git, address: "https://example.com", params: [{name: sslVerfy, value: "false"}]}' \
    | kubectl apply -n demo -f -; then
  echo "unexpected: the misspelt Connector was accepted" >&2; exit 1
fi

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
