#!/usr/bin/env bash
# Installs nginx (Debian's package) for `make bench-proxy` unless it is there. Only the
# proxy benchmark needs it: the tests do not. Idempotent.
set -euo pipefail
if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
  exit 0
fi
sudo=()
[[ "$(id -u)" == 0 ]] || sudo=(sudo)
echo "ensure-nginx: installing nginx (apt-get)" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
# The package may start a system nginx on port 80; the benchmark runs its own.
