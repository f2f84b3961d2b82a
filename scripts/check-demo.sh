#!/usr/bin/env bash
# `make check-demo`: builds the operator, starts the shipped demo tool on
# loopback and runs `connectors-operator check` on a class, Secrets and three
# Connectors (one Ready, one with a wrong password, one whose tool is down).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin connectors-operator --bin demo-tool
target/debug/demo-tool 127.0.0.1:18080 &
tool=$!
trap 'kill $tool 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:18080/ && break; sleep 0.1; done
echo "\$ connectors-operator check -f demo/check-demo.yaml"
set +e
target/debug/connectors-operator check -f demo/check-demo.yaml --probe-timeout 3
rc=$?
set -e
echo "check exited with $rc (0 only when every Connector is Ready; two of three are not, on purpose)"
