#!/usr/bin/env bash
# Installs what the tests need on a fresh machine: the Rust components for lint, and
# checks the Go toolchain that builds the local control plane. Idempotent.
set -euo pipefail
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
for tool in cargo go; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing required tool: $tool" >&2; exit 1; }
done
cargo --version
go version
