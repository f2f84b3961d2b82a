#!/usr/bin/env bash
# The README's first command: the operator's main job, end to end, on a local
# control plane (no existing cluster, no Docker).
#   1. builds the operator and the demo tool, and the local control plane (cached);
#   2. starts the control plane (state in .demo/), installs the CRDs;
#   3. runs `connectors-operator run` as a process, and the demo tool on loopback;
#   4. applies a published-style git ConnectorClass and three Connectors: one Ready,
#      one with a wrong password, one whose tool is down;
#   5. waits, prints `kubectl get connectors,connectorclasses` and a
#      `kubectl describe` of the failing Connector;
#   6. starts `connectors-operator proxy` and clones the demo tool's git repository
#      through a Connector's proxy address holding only a ServiceAccount token,
#      then tears everything down.
# DEMO_KEEP=1 keeps it all running until Ctrl-C (explore with the printed KUBECONFIG).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --quiet --locked --bin connectors-operator --bin demo-tool
export E2E_DIR="${DEMO_DIR:-$PWD/.demo}"
exec e2e/cluster.sh with -- scripts/demo-steps.sh
