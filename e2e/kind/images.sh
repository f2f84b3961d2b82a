# Sourced by e2e/kind/run.sh: every image the offline kind run needs, built
# locally and cached in the private dockerd's data root, each tagged by a key of
# its inputs (a warm run finds the tag and builds nothing). Needs start_dockerd.
#
#   debian base      debootstrap --variant=minbase bookworm, `docker import`
#   kind base        the base image of kind's images/base (kind's own files from the
#                    pinned kind module) on bookworm, with Debian's containerd/runc/CNI
#   components       kube-apiserver, kube-controller-manager, kube-scheduler,
#                    kube-proxy, etcd, coredns, pause: the tags kubeadm expects
#   node image       what `kind build node-image` does, without pulling
#   rust builder / runtime   the Dockerfile's RUST_IMAGE / RUNTIME_IMAGE
#   tools            Debian + git + curl + the host-built demo-tool (git http-backend)

# Bump when a recipe below changes in a way its inputs do not show.
IMAGES_RECIPE=1
DEBIAN_IMAGE="connectors-e2e/debian:bookworm-r$IMAGES_RECIPE"
BUILD_TMP="$KIND_CACHE/tmp"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
hash_of() { local f; for f; do sha256sum <"$f"; done | sha256sum | cut -c1-12; }
# docker build, legacy builder (it ignores `# syntax=`, which would pull), the host
# network (apt, crates.io).
dbuild() { DOCKER_BUILDKIT=0 docker build --network host --force-rm -q "$@" >/dev/null; }

build_debian_base() {
  have_image "$DEBIAN_IMAGE" && return 0
  local start=$SECONDS root="$BUILD_TMP/debootstrap"
  log "debootstrap bookworm -> $DEBIAN_IMAGE"
  rm -rf "$root"; mkdir -p "$root"
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$BUILD_TMP/debootstrap.log" 2>&1 \
    || { tail -20 "$BUILD_TMP/debootstrap.log" >&2; die "debootstrap failed"; }
  cat >"$root/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$root"
  log "debian base built in $((SECONDS - start))s"
}

kind_module_dir() {
  local d
  d="$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION"
  [[ -d "$d" ]] || (cd /tmp && GOFLAGS=-mod=mod go mod download "sigs.k8s.io/kind@$KIND_VERSION" >/dev/null)
  echo "$d"
}

ensure_kind_cli() {
  local dir="$KIND_CACHE/tools/kind-$KIND_VERSION"
  if [[ ! -x "$dir/kind" ]]; then
    log "go install sigs.k8s.io/kind@$KIND_VERSION"
    mkdir -p "$dir"
    (cd /tmp && GOBIN="$dir" go install "sigs.k8s.io/kind@$KIND_VERSION") || die "go install kind failed"
  fi
  export PATH="$dir:$PATH"
}

ensure_coredns() {
  local dir="$KIND_CACHE/tools/coredns-$COREDNS_VERSION"
  if [[ ! -f "$dir/.complete" ]]; then
    log "building coredns $COREDNS_VERSION (go install)"
    local start=$SECONDS
    rm -rf "$dir"; mkdir -p "$dir"
    (cd /tmp && GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags '-s -w' "github.com/coredns/coredns@$COREDNS_VERSION") \
      || die "coredns build failed"
    touch "$dir/.complete"
    log "coredns built in $((SECONDS - start))s"
  fi
  echo "$dir/coredns"
}

KIND_BASE_IMAGE=""
build_kind_base() {
  local kmod; kmod="$(kind_module_dir)"
  local ctx="$BUILD_TMP/ctx-kind-base"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp -r "$kmod/images/base/files" "$ctx/files"
  chmod -R u+w "$ctx/files"
  # One node, no kindnetd (it is not built here): a static ptp network for the
  # node's pod CIDR (kind's default podSubnet 10.244.0.0/16, the first node's /24).
  mkdir -p "$ctx/cni"
  cat >"$ctx/cni/10-ptp.conflist" <<'EOF'
{
  "cniVersion": "0.4.0",
  "name": "kind-ptp",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": true,
      "mtu": 1500,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.0.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat >"$ctx/Dockerfile" <<EOF
# kind's images/base Dockerfile ($KIND_VERSION) on bookworm: Debian's containerd,
# runc and CNI plugins instead of source builds (bookworm's systemd 252 still boots
# on cgroup v1; trixie's would not).
FROM $DEBIAN_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod \\
      libseccomp2 pigz bash ca-certificates curl jq procps \\
      containerd runc containernetworking-plugins \\
 && rm -rf /var/lib/apt/lists/* \\
 && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \\
 && rm -f /lib/systemd/system/multi-user.target.wants/* \\
 && rm -f /etc/systemd/system/*.wants/* \\
 && rm -f /lib/systemd/system/local-fs.target.wants/* \\
 && rm -f /lib/systemd/system/sockets.target.wants/*udev* \\
 && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \\
 && rm -f /lib/systemd/system/basic.target.wants/* \\
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
 && ln -sf /usr/lib/systemd/systemd /sbin/init
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY cni/10-ptp.conflist /etc/cni/net.d/10-ptp.conflist
RUN chmod 755 /usr/local/bin/* /kind /kind/bin /kind/bin/* \\
 && ln -sf /usr/bin/containerd /usr/local/bin/containerd \\
 && mkdir -p /opt/cni/bin && cp /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/ptp /usr/lib/cni/portmap /opt/cni/bin/ \\
 && ctr oci spec \\
    | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
    | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
 && systemctl mask systemd-binfmt.service \\
 && mkdir -p /etc/kubernetes/manifests
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]
EOF
  local key; key="$(cd "$ctx" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-12)"
  KIND_BASE_IMAGE="connectors-e2e/kind-base:$key"
  have_image "$KIND_BASE_IMAGE" && return 0
  local start=$SECONDS
  log "building $KIND_BASE_IMAGE"
  dbuild -t "$KIND_BASE_IMAGE" "$ctx" || die "kind base image build failed"
  log "kind base built in $((SECONDS - start))s"
}

# A FROM-scratch (or FROM Debian) image holding one binary, labelled with its key.
component_image() {
  local tag=$1 bin=$2 from=${3:-scratch} extra=${4:-}
  local name; name="$(basename "$bin")"
  local key; key="$(hash_of "$bin" <(echo "$from $extra $IMAGES_RECIPE"))"
  if have_image "$tag" && [[ "$(docker image inspect -f '{{index .Config.Labels "connectors-e2e.key"}}' "$tag")" == "$key" ]]; then
    return 0
  fi
  local ctx="$BUILD_TMP/ctx-$name"
  rm -rf "$ctx"; mkdir -p "$ctx"; cp "$bin" "$ctx/$name"
  {
    echo "FROM $from"
    [[ -n "$extra" ]] && echo "$extra"
    echo "COPY $name /usr/local/bin/$name"
    echo 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin'
    echo "LABEL connectors-e2e.key=$key"
    echo "ENTRYPOINT [\"/usr/local/bin/$name\"]"
  } >"$ctx/Dockerfile"
  dbuild -t "$tag" "$ctx" || die "image $tag failed"
  rm -rf "$ctx"
  log "built $tag"
}

pause_binary() {
  local out="$KIND_CACHE/tools/pause-$K8S_VERSION/pause"
  if [[ ! -x "$out" ]]; then
    local src; src="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
    [[ -f "$src" ]] || die "missing $src (run e2e/cluster.sh build first)"
    mkdir -p "$(dirname "$out")"
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG" -o "$out.tmp" "$src" || die "gcc pause failed"
    strip "$out.tmp"; mv "$out.tmp" "$out"
  fi
  echo "$out"
}

NODE_IMAGE=""
build_node_image() {
  local cp_bin node_bin coredns pause
  cp_bin="$("$REPO/e2e/cluster.sh" bin-dir)"
  node_bin="$("$HERE/node-binaries.sh")"
  coredns="$(ensure_coredns)"
  pause="$(pause_binary)"
  build_kind_base
  # kubeadm must expect exactly the tags built here.
  local want
  want="$("$node_bin/kubeadm" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null | LC_ALL=C sort | tr '\n' ' ')"
  local R=registry.k8s.io V=$K8S_VERSION
  local images=("$R/kube-apiserver:$V" "$R/kube-controller-manager:$V" "$R/kube-scheduler:$V" "$R/kube-proxy:$V"
    "$R/etcd:$ETCD_TAG" "$R/coredns/coredns:$COREDNS_VERSION" "$R/pause:$PAUSE_TAG")
  [[ "$want" == "$(printf '%s\n' "${images[@]}" | LC_ALL=C sort | tr '\n' ' ')" ]] \
    || die "kubeadm $V expects: $want; e2e/kind/lib.sh builds: ${images[*]}"

  local key
  key="$(hash_of "$cp_bin"/{kube-apiserver,kube-controller-manager,kubectl,etcd} "$node_bin"/{kubelet,kubeadm,kube-scheduler,kube-proxy} \
    "$coredns" "$pause" <(echo "$KIND_BASE_IMAGE $IMAGES_RECIPE"))"
  NODE_IMAGE="connectors-e2e/kind-node:$V-$key"
  have_image "$NODE_IMAGE" && return 0
  local start=$SECONDS
  log "building components for $NODE_IMAGE"
  component_image "$R/kube-apiserver:$V" "$cp_bin/kube-apiserver"
  component_image "$R/kube-controller-manager:$V" "$cp_bin/kube-controller-manager"
  component_image "$R/kube-scheduler:$V" "$node_bin/kube-scheduler"
  component_image "$R/etcd:$ETCD_TAG" "$cp_bin/etcd"
  component_image "$R/coredns/coredns:$COREDNS_VERSION" "$coredns"
  component_image "$R/pause:$PAUSE_TAG" "$pause" scratch 'USER 65535:65535'
  component_image "$R/kube-proxy:$V" "$node_bin/kube-proxy" "$DEBIAN_IMAGE" \
    'RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables nftables conntrack ipset kmod && rm -rf /var/lib/apt/lists/*'
  local tar="$BUILD_TMP/components.tar"
  docker save -o "$tar" "${images[@]}" || die "docker save failed"

  log "assembling $NODE_IMAGE (what kind build node-image does, without pulls)"
  local cid="kind-build-$$"
  docker rm -f "$cid" >/dev/null 2>&1 || true
  docker run -d --name "$cid" --entrypoint=sleep --security-opt seccomp=unconfined "$KIND_BASE_IMAGE" infinity >/dev/null \
    || die "cannot start the build container"
  local ok=0
  (
    set -e
    for b in "$cp_bin/kubectl" "$node_bin/kubeadm" "$node_bin/kubelet"; do
      docker cp "$b" "$cid:/usr/bin/$(basename "$b")"
      docker exec "$cid" chmod 755 "/usr/bin/$(basename "$b")"
    done
    docker exec "$cid" bash -c "mkdir -p /kind/manifests && printf '%s' '$V' > /kind/version"
    # kind applies default-storage.yaml on create; no provisioner is built here,
    # so only the default StorageClass. default-cni.yaml is unused (disableDefaultCNI).
    docker exec -i "$cid" bash -c 'cat > /kind/manifests/default-storage.yaml' <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
    docker exec "$cid" bash -c 'echo "# disableDefaultCNI: the node image carries /etc/cni/net.d/10-ptp.conflist" > /kind/manifests/default-cni.yaml'
    docker exec "$cid" bash -c 'nohup containerd > /tmp/containerd.log 2>&1 &'
    docker exec "$cid" bash -c 'for i in $(seq 50); do [ -S /run/containerd/containerd.sock ] && ctr info >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1'
    docker exec -i "$cid" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - <"$tar" >/dev/null
    # kind's containerd config names pause:3.10 as the sandbox image.
    docker exec "$cid" ctr --namespace=k8s.io images tag --force "$R/pause:$PAUSE_TAG" "$R/pause:3.10" >/dev/null
    docker exec "$cid" ctr --namespace=k8s.io images list -q >&2
    docker exec "$cid" pkill containerd
    sleep 1
    docker commit \
      --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' \
      --change 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""' \
      "$cid" "$NODE_IMAGE" >/dev/null
  ) && ok=1
  docker rm -f -v "$cid" >/dev/null 2>&1 || true
  rm -f "$tar"
  ((ok)) || die "node image assembly failed"
  log "node image built in $((SECONDS - start))s"
  # Older node images (other keys) are dead weight.
  docker images --format '{{.Repository}}:{{.Tag}}' connectors-e2e/kind-node | grep -vxF "$NODE_IMAGE" | xargs -r docker rmi >/dev/null 2>&1 || true
}

# The Dockerfile's RUST_IMAGE: local Debian + this machine's Rust toolchain.
RUST_BUILDER_IMAGE=""
build_rust_builder() {
  local sysroot ver
  sysroot="$(rustc --print sysroot)"
  ver="$(rustc --version | awk '{print $2}')-$(rustc -vV | sed -n 's/^commit-hash: //p' | cut -c1-8)"
  local cas; cas="$(cat /usr/local/share/ca-certificates/*.crt 2>/dev/null | sha256sum | cut -c1-8)"
  RUST_BUILDER_IMAGE="connectors-e2e/rust-builder:$ver-$cas-r$IMAGES_RECIPE"
  have_image "$RUST_BUILDER_IMAGE" && return 0
  local start=$SECONDS ctx="$BUILD_TMP/ctx-rust"
  rm -rf "$ctx"; mkdir -p "$ctx"
  log "building $RUST_BUILDER_IMAGE from $sysroot"
  # The machine's extra trust anchors (a TLS-inspecting egress proxy, if any), so
  # cargo in the image reaches the crate registry exactly as cargo on the host does.
  mkdir -p "$ctx/ca"
  cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
  tar -C "$sysroot" --exclude=./share --exclude=./lib/rustlib/src --exclude='./lib/rustlib/*/analysis' -cf "$ctx/rust.tar" ./bin ./lib ./libexec 2>/dev/null \
    || tar -C "$sysroot" --exclude=./share --exclude=./lib/rustlib/src -cf "$ctx/rust.tar" ./bin ./lib
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      gcc libc6-dev pkg-config ca-certificates make \\
 && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ADD rust.tar /usr/local/rust/
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo
RUN cargo --version && rustc --version
EOF
  dbuild -t "$RUST_BUILDER_IMAGE" "$ctx" || die "rust builder image failed"
  rm -rf "$ctx"
  log "rust builder built in $((SECONDS - start))s"
}

# The Dockerfile's RUNTIME_IMAGE: what distroless cc has (glibc, libgcc, CA
# certificates, nonroot 65532), taken from the local Debian base.
RUNTIME_IMAGE="connectors-e2e/runtime:bookworm-r$IMAGES_RECIPE"
build_runtime() {
  have_image "$RUNTIME_IMAGE" && return 0
  local ctx="$BUILD_TMP/ctx-runtime"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE AS src
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \\
 && mkdir -p /rootfs/etc /rootfs/tmp /rootfs/home/nonroot /rootfs/usr/lib/x86_64-linux-gnu /rootfs/usr/lib64 \\
 && chmod 1777 /rootfs/tmp && chown 65532:65532 /rootfs/home/nonroot \\
 && cd /usr/lib/x86_64-linux-gnu && cp -a libc.so.6 libm.so.6 libgcc_s.so.1 libdl.so.2 libpthread.so.0 librt.so.1 ld-linux-x86-64.so.2 /rootfs/usr/lib/x86_64-linux-gnu/ \\
 && cp -a /usr/lib64/ld-linux-x86-64.so.2 /rootfs/usr/lib64/ \\
 && ln -s usr/lib /rootfs/lib && ln -s usr/lib64 /rootfs/lib64 \\
 && mkdir -p /rootfs/etc/ssl/certs && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \\
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \\
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group
FROM scratch
COPY --from=src /rootfs/ /
USER 65532:65532
EOF
  dbuild -t "$RUNTIME_IMAGE" "$ctx" || die "runtime image failed"
  rm -rf "$ctx"
  log "built $RUNTIME_IMAGE"
}

# The project's Dockerfile, unchanged. Docker's layer cache (in the cached data
# root) keeps the dependency layer until Cargo.toml/Cargo.lock change.
OPERATOR_IMAGE=connectors-operator:e2e
build_operator_image() {
  build_rust_builder
  build_runtime
  local start=$SECONDS
  log "docker build $REPO (Dockerfile unchanged; RUST_IMAGE=$RUST_BUILDER_IMAGE RUNTIME_IMAGE=$RUNTIME_IMAGE)"
  DOCKER_BUILDKIT=0 bg_wait docker build --network host --force-rm \
    --build-arg "RUST_IMAGE=$RUST_BUILDER_IMAGE" --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" \
    -t "$OPERATOR_IMAGE" "$REPO" >"$STATE/operator-build.log" 2>&1 \
    || { tail -40 "$STATE/operator-build.log" >&2; die "operator image build failed (log: $STATE/operator-build.log)"; }
  log "operator image built in $((SECONDS - start))s"
  # No `docker image prune`: the builder stage's untagged layers ARE the cache.
}

# Debian + git + curl + the demo tool (built on this host, same glibc as bookworm).
TOOLS_IMAGE=""
build_tools_image() {
  local bin="$REPO/target/debug/demo-tool"
  (cd "$REPO" && cargo build -q --locked -p connectors-operator --bin demo-tool) || die "cargo build demo-tool failed"
  local key; key="$(hash_of "$bin")"
  TOOLS_IMAGE="connectors-e2e/tools:$key"
  have_image "$TOOLS_IMAGE" && return 0
  local ctx="$BUILD_TMP/ctx-tools"
  rm -rf "$ctx"; mkdir -p "$ctx"; cp "$bin" "$ctx/demo-tool"
  cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git curl ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
COPY demo-tool /usr/local/bin/demo-tool
EOF
  dbuild -t "$TOOLS_IMAGE" "$ctx" || die "tools image failed"
  rm -rf "$ctx"
  docker images --format '{{.Repository}}:{{.Tag}}' connectors-e2e/tools | grep -vxF "$TOOLS_IMAGE" | xargs -r docker rmi >/dev/null 2>&1 || true
  log "built $TOOLS_IMAGE"
}
