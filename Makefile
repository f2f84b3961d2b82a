.PHONY: demo check-demo test crds build bench bench-proxy bench-sync

# Runs the operator end to end on a local control plane (no cluster needed).
demo:
	scripts/demo.sh

# The same class and Connectors judged by `connectors-operator check`, no cluster at all.
check-demo:
	scripts/check-demo.sh

# Every test: fmt, clippy, unit tests, e2e tests on a real local control plane.
test:
	scripts/test-all.sh

# Regenerates the committed CRDs from the Rust types.
crds:
	cargo run -q -- crds --group connectors.alauda.io > crds/connectors.alauda.io.yaml
	cargo run -q -- crds --group dex.coreos.com > crds/dex/dex.coreos.com.yaml
	cargo run -q -- crds --group auth.alauda.io > crds/users/auth.alauda.io.yaml
	cargo run -q -- crds --group user.openshift.io > crds/groups/user.openshift.io.yaml

# The scale benchmark (docs/benchmarks.md) on its own local control plane: make bench N=10000
N ?= 1000
# One cargo invocation builds both, so nothing is rebuilt between them.
bench:
	cargo build --release --locked -p connectors-operator -p connectors-e2e --bins
	"$${CARGO_TARGET_DIR:-target}/release/bench" --connectors $(N) --operator-bin-dir "$${CARGO_TARGET_DIR:-target}/release"

# The proxy benchmark (docs/benchmarks.md, "Proxy") on its own local control plane:
# latency vs direct and vs nginx (installed here if missing), 1 GiB transfers, RSS,
# apiserver requests per proxied request. About 2 minutes once built.
bench-proxy:
	scripts/ensure-nginx.sh
	cargo build --release --locked -p connectors-operator -p connectors-e2e --bins
	"$${CARGO_TARGET_DIR:-target}/release/bench-proxy" --operator-bin-dir "$${CARGO_TARGET_DIR:-target}/release"

# The directory sync benchmark (docs/benchmarks.md, "Directory sync") on its own local
# control plane and slapd: USERS people in GROUPS groups vs a bare-client floor.
USERS ?= 10000
GROUPS ?= 500
bench-sync:
	cargo build --release --locked -p connectors-operator -p connectors-e2e --bins
	E2E_DIR=$${E2E_DIR:-/tmp/connectors-bench-sync} e2e/cluster.sh with -- env E2E_BIN_DIR="$$PWD/$${CARGO_TARGET_DIR:-target}/release" \
	  "$${CARGO_TARGET_DIR:-target}/release/bench-sync" --users $(USERS) --groups $(GROUPS)

build:
	cargo build --release --bin connectors-operator
