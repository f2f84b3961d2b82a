#!/usr/bin/env bash
# Installs what the tests need on a fresh machine: the Rust components for lint,
# slapd, node and the OIDC provider of the identity e2e tests, and checks the Go
# toolchain that builds the local control plane. Idempotent.
set -euo pipefail
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
for tool in cargo go; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing required tool: $tool" >&2; exit 1; }
done
# Debian packages of the identity e2e tests: OpenLDAP (slapd, e2e/src/ldap.rs) and
# node/npm for the OIDC provider (e2e/src/oidc.rs). One `apt-get update`, only when
# something is missing.
packages=()
if ! command -v slapd >/dev/null 2>&1 && [[ ! -x /usr/sbin/slapd ]]; then
  packages+=(slapd ldap-utils)
fi
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if ((${#packages[@]})); then
  command -v apt-get >/dev/null 2>&1 || { echo "missing ${packages[*]} and no apt-get to install them" >&2; exit 1; }
  sudo_cmd=()
  [[ "$(id -u)" != 0 ]] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
# A real OIDC provider for the identity e2e tests: panva's oidc-provider from npm,
# cached by version (docs/identity.md says why this one).
OIDC_PROVIDER_VERSION=8.8.1
oidc_dir="${XDG_CACHE_HOME:-$HOME/.cache}/connectors-e2e/oidc-provider-$OIDC_PROVIDER_VERSION"
if [[ ! -d "$oidc_dir/node_modules/oidc-provider" ]]; then
  mkdir -p "$oidc_dir"
  echo '{"name":"connectors-e2e-oidc","private":true,"type":"module"}' > "$oidc_dir/package.json"
  npm install --prefix "$oidc_dir" --no-audit --no-fund --silent "oidc-provider@$OIDC_PROVIDER_VERSION"
fi
cargo --version
go version
{ /usr/sbin/slapd -VV 2>&1 || true; } | head -1
