# syntax=docker/dockerfile:1
#
# connectors-operator image: `docker build -t connectors-operator:latest .`
# Build stage compiles the release binary; the runtime stage is distroless
# (glibc + CA certificates, no shell), running as the nonroot user 65532.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. Dependencies only, cached until Cargo.toml/Cargo.lock change: the
#    workspace manifests plus stub sources, since cargo refuses a manifest
#    whose targets are missing (crate roots, and every [[bench]] declared
#    without a path; their real sources are never needed for the image).
COPY Cargo.toml Cargo.lock ./
COPY e2e/Cargo.toml e2e/Cargo.toml
RUN mkdir -p src e2e/src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs e2e/src/lib.rs \
 && for bench in $(sed -n '/^\[\[bench\]\]/,/^$/ s/^name *= *"\([^"]*\)".*/\1/p' Cargo.toml); do \
      echo 'fn main() {}' > "benches/$bench.rs"; \
    done \
 && cargo fetch --locked \
 && cargo build --release --locked --offline -p connectors-operator --bin connectors-operator \
 && rm -rf src

# 2. The operator itself. Touch the crate roots: COPY keeps the context's
#    mtimes, which can be older than the stubs' build and fool cargo.
COPY src src
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --offline -p connectors-operator --bin connectors-operator \
 && install -D -m 0755 target/release/connectors-operator /out/connectors-operator

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="connectors-operator" \
      org.opencontainers.image.description="Kubernetes operator for Connector and ConnectorClass (connectors.alauda.io/v1alpha1)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/connectors-operator /usr/local/bin/connectors-operator
USER 65532:65532
EXPOSE 8080 9443
ENTRYPOINT ["/usr/local/bin/connectors-operator"]
CMD ["run"]
