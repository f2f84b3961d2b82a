# Shared by e2e/kind/*.sh (sourced, not run): paths, versions, and the private
# dockerd this harness starts and stops itself, with every host change it makes
# recorded before and undone after (see e2e/kind/README.md, "Teardown").
#
# The daemon is private: its own socket, exec root and pid file under $STATE,
# its data root (images, build cache) under $KIND_CACHE/docker so warm runs keep
# every built image. Nothing in /etc is changed; DOCKER_HOST points the docker
# CLI and kind at it.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE_ROOT="${CONNECTORS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connectors-e2e}"
KIND_CACHE="$CACHE_ROOT/kind"
STATE="${E2E_KIND_STATE:-$REPO/.e2e-kind}"
KIND_VERSION=v0.33.0
# The Kubernetes version is the one e2e/controlplane pins (e2e/kind/node follows it).
K8S_VERSION="$(grep -Eo 'k8s\.io/kubernetes v[0-9]+\.[0-9]+\.[0-9]+' "$REPO/e2e/controlplane/go.mod" | head -1 | cut -d' ' -f2)"
# What kubeadm $K8S_VERSION expects (`kubeadm config images list`); checked at build.
ETCD_TAG=3.7.0-0
COREDNS_VERSION=v1.14.6
PAUSE_TAG=3.10.2
CLUSTER="${KIND_CLUSTER_NAME:-connectors-e2e}"

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:$PATH"
fi

log() { echo "kind[$(date -u +%H:%M:%S)]: $*" >&2; }
die() { log "$*"; exit 1; }

# Debian packages the harness needs; `apt-get update` at most once, only if one
# is missing. policy-rc.d keeps the package scripts from starting a daemon.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (apt)"
  local policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [[ -n "$policy" ]] && rm -f "$policy"
  ((rc == 0)) || die "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------- host state

# Volatile kernel counters and per-interface keys: never "restored".
SYSCTL_VOLATILE='^(kernel\.random\.|kernel\.ns_last_pid|kernel\.pty\.nr|kernel\.tainted|fs\.(dentry-state|inode-nr|inode-state|file-nr|aio-nr|quota\.)|net\.netfilter\.nf_conntrack_count|net\.ipv[46]\.(conf|neigh)\.(veth|docker|br-|vxlan|cni)|net\.ipv6\.conf\.[^.]*\.stable_secret|vm\.stat_refresh|kernel\.sched_domain)'

snapshot_host() {
  mkdir -p "$STATE/host"
  sysctl -a 2>/dev/null | LC_ALL=C sort >"$STATE/host/sysctl.before"
  iptables-save 2>/dev/null >"$STATE/host/iptables.before" || true
  ip6tables-save 2>/dev/null >"$STATE/host/ip6tables.before" || true
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | LC_ALL=C sort >"$STATE/host/links.before"
}

# Every sysctl whose value changed since snapshot_host (kubelet: vm.overcommit_memory,
# kernel.panic, kernel.panic_on_oops; dockerd: net.ipv4.ip_forward; ...) is written back.
restore_sysctls() {
  [[ -f "$STATE/host/sysctl.before" ]] || return 0
  local after="$STATE/host/sysctl.after" key val now
  sysctl -a 2>/dev/null | LC_ALL=C sort >"$after"
  # key, before, now (unit-separated: values may hold tabs) for every key present in both whose value differs.
  while IFS=$'\x1f' read -r key val now; do
    [[ "$key" =~ $SYSCTL_VOLATILE ]] && continue
    if sysctl -q -w "$key=$val" >/dev/null 2>&1; then
      log "restored sysctl $key: $now -> $val"
    else
      log "could not restore sysctl $key ($now, was $val)"
    fi
  done < <(awk -F ' = ' 'NR == FNR { b[$1] = substr($0, length($1) + 4); next }
             ($1 in b) { v = substr($0, length($1) + 4); if (v != b[$1]) printf "%s\037%s\037%s\n", $1, b[$1], v }' \
             "$STATE/host/sysctl.before" "$after")
}

# Rules and chains docker added (DOCKER*, docker0, br-<network>), and only those.
restore_iptables() {
  local tool=$1 before="$STATE/host/$1.before" table="" line chain
  [[ -f "$before" ]] || return 0
  command -v "$tool-save" >/dev/null || return 0
  local after; after="$("$tool-save" 2>/dev/null)" || return 0
  local new_chains=()
  while IFS= read -r line; do
    case "$line" in
      \**) table="${line#\*}" ;;
      :DOCKER*)
        chain="${line#:}"; chain="${chain%% *}"
        grep -qxF -- "$line" "$before" 2>/dev/null || grep -q "^:$chain " "$before" || new_chains+=("$table $chain")
        ;;
      -A\ *)
        [[ "$line" =~ DOCKER|docker0|br-[0-9a-f]{12} ]] || continue
        grep -qxF -- "$line" "$before" && continue
        eval "$tool -w -t $table -D ${line#-A }" 2>/dev/null || true
        ;;
    esac
  done <<<"$after"
  local tc
  for tc in "${new_chains[@]}"; do $tool -w -t ${tc% *} -F "${tc#* }" 2>/dev/null || true; done
  for tc in "${new_chains[@]}"; do $tool -w -t ${tc% *} -X "${tc#* }" 2>/dev/null || true; done
}

restore_links() {
  [[ -f "$STATE/host/links.before" ]] || return 0
  local l
  for l in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//'); do
    [[ "$l" == docker0 || "$l" == br-* || "$l" == veth* ]] || continue
    grep -qxF "$l" "$STATE/host/links.before" && continue
    ip link delete "$l" 2>/dev/null && log "removed link $l"
  done
  # docker0 must never stay, whoever made it (a previous crashed run).
  ip link show docker0 >/dev/null 2>&1 && ip link delete docker0 && log "removed link docker0"
  return 0
}

# ---------------------------------------------------------------- dockerd

DOCKER_SOCK="$STATE/docker.sock"

write_runc_wrapper() {
  # The machine's bounding set lacks CAP_SYS_RESOURCE, so runc fails to apply a
  # privileged container's capability set. This wrapper (docker's default
  # runtime) drops that one capability from the bundle's config.json
  # (create/run) and from the --process file (exec), then runs the real runc.
  mkdir -p "$STATE/bin"
  cat >"$STATE/bin/runc-nocap" <<'EOF'
#!/bin/bash
REAL_RUNC="${REAL_RUNC:-/usr/sbin/runc}"
cmd="" bundle="" process="" args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  a="${args[i]}"
  case "$a" in
    --bundle|-b) bundle="${args[i+1]}" ;;
    --bundle=*) bundle="${a#*=}" ;;
    --process|-p) process="${args[i+1]}" ;;
    --process=*) process="${a#*=}" ;;
    create|run|exec) [[ -z "$cmd" ]] && cmd="$a" ;;
  esac
done
strip() {
  local f=$1 filter=$2
  [[ -f "$f" ]] || return 0
  grep -q CAP_SYS_RESOURCE "$f" || return 0
  jq -c "def nores: if type == \"array\" then map(select(. != \"CAP_SYS_RESOURCE\")) else . end; $filter" "$f" >"$f.nocap" && mv -f "$f.nocap" "$f"
}
case "$cmd" in
  create|run) strip "${bundle:-.}/config.json" 'if .process.capabilities then .process.capabilities |= map_values(nores) else . end' ;;
  exec) [[ -n "$process" ]] && strip "$process" 'if .capabilities then .capabilities |= map_values(nores) else . end' ;;
esac
exec "$REAL_RUNC" "$@"
EOF
  chmod 755 "$STATE/bin/runc-nocap"
}

docker_running() {
  [[ -f "$STATE/dockerd.pid" ]] && kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null
}

start_dockerd() {
  ensure_packages docker.io jq iptables debootstrap
  mkdir -p "$STATE" "$KIND_CACHE/docker"
  export DOCKER_HOST="unix://$DOCKER_SOCK"
  # The docker CLI matching this daemon (a newer one elsewhere on PATH may not be).
  mkdir -p "$STATE/bin"
  ln -sf /usr/bin/docker "$STATE/bin/docker"
  export PATH="$STATE/bin:$PATH"
  if docker_running; then return 0; fi
  snapshot_host
  write_runc_wrapper
  cat >"$STATE/daemon.json" <<EOF
{
  "storage-driver": "overlay2",
  "data-root": "$KIND_CACHE/docker",
  "exec-root": "$STATE/exec",
  "pidfile": "$STATE/dockerd.pid.daemon",
  "hosts": ["unix://$DOCKER_SOCK"],
  "bridge": "none",
  "runtimes": {"nocap": {"path": "$STATE/bin/runc-nocap"}},
  "default-runtime": "nocap",
  "log-level": "warn"
}
EOF
  log "starting dockerd (data root $KIND_CACHE/docker)"
  dockerd --config-file "$STATE/daemon.json" >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/dockerd.pid"
  local i
  for i in $(seq 120); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$(cat "$STATE/dockerd.pid")" 2>/dev/null || { tail -20 "$STATE/dockerd.log" >&2; die "dockerd exited"; }
    sleep 0.5
  done
  docker version >/dev/null 2>&1 || die "dockerd not ready: $(tail -5 "$STATE/dockerd.log")"
  # Leftovers of a run that was killed hard (SIGKILL skips the trap).
  local stale; stale="$(docker ps -aq)"
  [[ -n "$stale" ]] && { log "removing stale containers"; docker rm -f -v $stale >/dev/null || true; }
  return 0
}

# Containers, networks, the daemon (by PID), then the host changes.
stop_dockerd() {
  local pid=""
  [[ -f "$STATE/dockerd.pid" ]] && pid="$(cat "$STATE/dockerd.pid")"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    export DOCKER_HOST="unix://$DOCKER_SOCK"
    local ids; ids="$(docker ps -aq 2>/dev/null)" || true
    [[ -n "$ids" ]] && docker rm -f -v $ids >/dev/null 2>&1
    local nets; nets="$(docker network ls -q --filter type=custom 2>/dev/null)" || true
    [[ -n "$nets" ]] && docker network rm $nets >/dev/null 2>&1
    docker volume prune -f >/dev/null 2>&1 || true
    # dockerd's own containerd is its child; it stops with the daemon.
    local children; children="$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ')" || true
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then log "dockerd $pid did not stop; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    for c in $children; do
      for i in $(seq 20); do kill -0 "$c" 2>/dev/null || break; sleep 0.5; done
      kill -KILL "$c" 2>/dev/null || true
    done
    log "dockerd $pid stopped"
  fi
  rm -f "$STATE/dockerd.pid"
  # Shims of containers that outlived the daemon (none expected).
  local shims; shims="$(pgrep -f "containerd-shim.*$STATE/exec" 2>/dev/null)" || true
  [[ -n "$shims" ]] && kill -KILL $shims 2>/dev/null || true
  { grep -F " $STATE/exec" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l; } 2>/dev/null || true
  { grep -F " $KIND_CACHE/docker/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l; } 2>/dev/null || true
  restore_links
  restore_iptables iptables
  restore_iptables ip6tables
  restore_sysctls
  rm -rf "$STATE/host" "$STATE/exec"
  return 0
}

# Runs a long command in the background and waits for it, so that SIGINT/SIGTERM
# reach the script's traps at once (bash defers traps until a foreground child
# ends); teardown stops CHILD_PID and its children.
CHILD_PID=""
bg_wait() {
  "$@" &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return "$rc"
}
stop_child() {
  [[ -n "$CHILD_PID" ]] || return 0
  pkill -TERM -P "$CHILD_PID" 2>/dev/null
  kill -TERM "$CHILD_PID" 2>/dev/null
  return 0
}
