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
target/debug/demo-tool --git-root "$E2E_DIR/git" "127.0.0.1:$port" 2>"$log_dir/demo-tool.log" &
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

say "a workload's view: git clone through the Connectors proxy with only a ServiceAccount token"
proxy_port="${DEMO_PROXY_PORT:-18082}"
target/debug/connectors-operator proxy --addr "127.0.0.1:$proxy_port" \
  --metrics-bind-address 127.0.0.1:18083 --namespace connectors-system \
  --public-hosts 127.0.0.1 --allow-loopback-destinations \
  >"$log_dir/proxy.log" 2>&1 &
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18083/readyz && break; sleep 0.1; done
# A class whose proxy is published at an absolute address (here the local proxy;
# in a cluster the ExternalName Service c-{name} leads to it) with the path resolver.
sed "s/127.0.0.1:18080/127.0.0.1:$port/g; s/18082/$proxy_port/" demo/proxy-demo.yaml | kubectl apply -n demo -f -
kubectl wait -n demo connector/demo-git-proxied --for=condition=Ready --timeout=60s
proxy_url=$(kubectl get connector demo-git-proxied -n demo -o jsonpath='{.status.proxy.httpAddress.url}')
echo "status.proxy.httpAddress.url: $proxy_url"
kubectl create token builder -n demo --duration=10m >"$E2E_DIR/builder.token"
echo "the workload holds only a token of ServiceAccount demo/builder (Role: get connectors)"
rm -rf "$E2E_DIR/clone"
GIT_TERMINAL_PROMPT=0 git -c credential.helper= clone \
  "http://builder:$(cat "$E2E_DIR/builder.token")@${proxy_url#http://}/demo/repo.git" "$E2E_DIR/clone" 2>&1 \
  | sed "s/$(cat "$E2E_DIR/builder.token")/<token>/g"
git -C "$E2E_DIR/clone" log --oneline -1
echo "the tool saw (Authorization of the last request): $(curl -s "http://127.0.0.1:$port/_requests" \
  | python3 -c 'import json,sys; r=json.load(sys.stdin)[-1]; print([v for k,v in r["headers"] if k=="authorization"])')"
echo "(Basic demo:demo-password from Secret demo-creds; the token never left the proxy)"

say "the API gateway: the Connector's status.api.path, served by connectors-operator api"
target/debug/connectors-operator api --addr 127.0.0.1:18084 \
  --metrics-bind-address 127.0.0.1:18085 --namespace connectors-system \
  --allow-loopback-destinations >"$log_dir/api.log" 2>&1 &
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18085/readyz && break; sleep 0.1; done
api_path=$(kubectl get connector demo-git-proxied -n demo -o jsonpath='{.status.api.path}')
echo "GET http://127.0.0.1:18084$api_path/api/v4/projects/demo%2Frepo/repository/branches"
curl -sS -H "Authorization: Bearer $(cat "$E2E_DIR/builder.token")" \
  "http://127.0.0.1:18084$api_path/api/v4/projects/demo%2Frepo/repository/branches"
echo
echo "(the class API got the Connector's Secret in X-Plugin-Secret; the caller only its token)"

if [[ "${DEMO_KEEP:-}" == 1 ]]; then
  say "running; KUBECONFIG=$KUBECONFIG (Ctrl-C stops everything)"
  wait "$operator"
fi
