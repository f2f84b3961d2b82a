#!/usr/bin/env bash
# The project's one test command (README): lint, unit tests, then e2e tests against a
# real local control plane that is built (cached), started and always torn down, then the
# in-cluster tests on kind (e2e/kind/run.sh).
# Prints how long each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
stage() {
  local name=$1; shift
  local start=$SECONDS
  echo "==> [$name] $*"
  if "$@"; then
    timings+=("$(printf '%-22s %5ss  ok' "$name" $((SECONDS - start)))")
  else
    local rc=$?
    timings+=("$(printf '%-22s %5ss  FAILED' "$name" $((SECONDS - start)))")
    report
    exit "$rc"
  fi
}
report() {
  echo
  echo "Stage timings:"
  printf '  %s\n' "${timings[@]}"
}

stage toolchain   scripts/install-deps.sh
stage fmt         cargo fmt --all -- --check
stage clippy      cargo clippy --workspace --all-targets --locked -- -D warnings
stage unit-tests  cargo test -p connectors-operator --locked
stage binaries    cargo build -p connectors-operator --bins --locked
stage controlplane-build e2e/cluster.sh build
stage e2e-tests   e2e/cluster.sh with -- cargo test -p connectors-e2e --locked -- --test-threads=2
# The operator image (Dockerfile) installed by config/default on a kind cluster, with
# pods using it; builds every image locally (cached) and always tears down.
stage kind        e2e/kind/run.sh
report
