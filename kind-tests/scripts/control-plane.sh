#!/usr/bin/env bash
# A real Kubernetes control plane (etcd + kube-apiserver v1.20.2) on a machine without Docker.
#
#   control-plane.sh install [--node]   install packages, build kube-apiserver once (cached by
#                                 version); with --node also Docker's engine, kubelet,
#                                 kube-scheduler, kube-controller-manager and the images
#   control-plane.sh up DIR [--node]    start etcd + kube-apiserver on free loopback ports, state
#                                 in DIR, writes DIR/kubeconfig; prints its path. With --node the
#                                 API server listens on the Docker bridge instead (172.17.0.1,
#                                 where pods reach it), ServiceAccount tokens work, and a kubelet
#                                 on the local Docker engine registers a Ready node (node.sh)
#   control-plane.sh up DIR --bridge    etcd + kube-apiserver on the Docker bridge, without a
#                                 node: another cluster that pods of the node can reach (the
#                                 test clusters of a pool)
#   control-plane.sh down DIR     stop what `up` started, by process id
#   control-plane.sh apiserver-stop DIR    stop only kube-apiserver (an outage, for tests)
#   control-plane.sh apiserver-start DIR   start it again as `up` did; waits until it is ready
#
# The recipe is shared/docs/local-control-plane.md: Debian's `kubernetes` source package (bookworm),
# its vendored reflect2 swapped for Debian's 1.0.2, built in GOPATH mode with Go 1.19.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE_DIR="${PROW_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prow-operator}"
APISERVER="$CACHE_DIR/kube-apiserver-v$K8S_VERSION"

log() { echo "control-plane: $*" >&2; }

# shellcheck source=node.sh
. "$(dirname "${BASH_SOURCE[0]}")/node.sh"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  local missing=()
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v kubectl >/dev/null || missing+=(kubectl)
  command -v curl >/dev/null || missing+=(curl)
  if [ ! -x "$APISERVER" ]; then
    [ -x /usr/lib/go-1.19/bin/go ] || missing+=(golang-1.19-go)
    command -v rsync >/dev/null || missing+=(rsync)
    [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || missing+=(golang-github-modern-go-reflect2-dev)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

enable_deb_src() {
  local f=/etc/apt/sources.list.d/debian.sources
  if [ -f "$f" ] && ! grep -q '^Types: deb deb-src' "$f"; then
    as_root sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    as_root apt-get update -qq
  fi
}

NODE_BINARIES=(kubelet kube-scheduler kube-controller-manager)

cached() { echo "$CACHE_DIR/$1-v$K8S_VERSION"; }

# Builds the named commands of Debian's kubernetes source (bookworm) and caches each binary by
# version. kube-apiserver is static (CGO_ENABLED=0, as before); kubelet needs cgo, as upstream.
build_binaries() {
  local missing=() name
  for name in "$@"; do [ -x "$(cached "$name")" ] || missing+=("$name"); done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "$* v$K8S_VERSION cached in $CACHE_DIR"
    return
  fi
  enable_deb_src
  mkdir -p "$CACHE_DIR"
  local work
  work=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
  log "building ${missing[*]} v$K8S_VERSION in $work (kube-apiserver about 5 minutes on 2 cores, the node binaries about 12)"
  (
    cd "$work"
    apt-get source --download-only kubernetes/bookworm >/dev/null 2>&1
    tar xzf kubernetes_*.orig.tar.gz
    cd kubernetes-$K8S_VERSION
    # The vendored reflect2 v1.0.1 crashes under Go >= 1.18; Debian's 1.0.2 does not.
    rm -rf vendor/github.com/modern-go/reflect2
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
    mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
    rm -rf _output
    local static=() dynamic=()
    for name in "${missing[@]}"; do
      case "$name" in kube-apiserver) static+=("cmd/$name") ;; *) dynamic+=("cmd/$name") ;; esac
    done
    local go_env=(GOPATH="$PWD/.go" PATH="/usr/lib/go-1.19/bin:$PATH" HOME="$(mktemp -d)")
    if [ "${#static[@]}" -gt 0 ]; then
      env "${go_env[@]}" CGO_ENABLED=0 make WHAT="${static[*]}" >>"$work/build.log" 2>&1 \
        || { tail -40 "$work/build.log" >&2; exit 1; }
    fi
    if [ "${#dynamic[@]}" -gt 0 ]; then
      env "${go_env[@]}" make WHAT="${dynamic[*]}" >>"$work/build.log" 2>&1 \
        || { tail -40 "$work/build.log" >&2; exit 1; }
      # The pause image's one program, from the same tree (no registry to pull it from).
      gcc -Os -static -o _output/bin/pause build/pause/linux/pause.c
      install -m 0755 _output/bin/pause "$(cached pause).tmp"
      mv "$(cached pause).tmp" "$(cached pause)"
    fi
    for name in "${missing[@]}"; do
      install -m 0755 "_output/bin/$name" "$(cached "$name").tmp"
      mv "$(cached "$name").tmp" "$(cached "$name")"
    done
  )
  rm -rf "$work"
  log "built ${missing[*]} in $CACHE_DIR"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

make_certs() {
  local d=$1 san=$2
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=prow-operator-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=%s\n' "$san" >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile san.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

up() {
  local d=$1 node=${2:-}
  [ -x "$APISERVER" ] || { log "kube-apiserver not built; run '$0 install' first"; exit 1; }
  mkdir -p "$d"
  d=$(cd "$d" && pwd)
  local host=127.0.0.1 san="IP:127.0.0.1,DNS:localhost" node_flags=()
  if [ "$node" = --node ]; then
    ensure_engine
    build_toolbox_image
    host=$BRIDGE_IP
    san="$san,IP:$BRIDGE_IP"
    # Pods reach the API server on the bridge and get ServiceAccount tokens; the kubelet is
    # reached by its InternalIP (there is no DNS for node names); webhooks served by pods are
    # dialled at their endpoints (no kube-proxy for Service IPs).
    node_flags=(--authorization-mode=Node,RBAC --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ServiceAccount
      --kubelet-preferred-address-types=InternalIP --enable-aggregator-routing=true)
  elif [ "$node" = --bridge ]; then
    # Another API server pods can reach (a test cluster of a pool), without a node of its own.
    host=$(bridge_ip)
    [ -n "$host" ] || { log "no Docker bridge: start the engine first (up DIR --node)"; exit 1; }
    san="$san,IP:$host"
    node_flags=(--authorization-mode=RBAC --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook
      --disable-admission-plugins=ServiceAccount)
  else
    node_flags=(--authorization-mode=RBAC --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook
      --disable-admission-plugins=ServiceAccount)
  fi
  make_certs "$d" "$san"
  local token
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token,admin,admin,system:masters" >"$d/tokens.csv"
  local etcd_port etcd_peer api_port
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
  # etcd's data in memory when the machine has a tmpfs: a throwaway control plane needs no
  # fsync, and disk flush times would otherwise set the latencies the benchmarks measure.
  local data="$d/etcd"
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    data=$(mktemp -d /dev/shm/prow-operator-etcd.XXXXXX)
    echo "$data" >"$d/etcd.data"
  fi
  etcd --data-dir "$data" --name default \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" \
    --quota-backend-bytes=8589934592 >"$d/etcd.log" 2>&1 &
  echo $! >"$d/etcd.pid"
  # The command line is kept so that apiserver-start can bring the same server back.
  printf '%q ' "$APISERVER" --etcd-servers="http://127.0.0.1:$etcd_port" --bind-address="$host" \
    --secure-port="$api_port" --tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" \
    --client-ca-file="$d/ca.crt" --token-auth-file="$d/tokens.csv" \
    --service-account-key-file="$d/sa.pub" --service-account-signing-key-file="$d/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.0.0.0/24 "${node_flags[@]}" --allow-privileged=true \
    --max-requests-inflight=2000 --max-mutating-requests-inflight=1000 >"$d/apiserver.cmd"
  start_apiserver "$d"
  cat >"$d/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$host:$api_port
    certificate-authority: $d/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context: {cluster: local, user: admin, namespace: default}
current-context: local
KC
  wait_ready "$d"
  if [ "$node" = --node ]; then
    start_node "$d" || { down "$d"; exit 1; }
  fi
  echo "$d/kubeconfig"
}

start_apiserver() {
  local d=$1
  # exec: the recorded process ID is the API server's own, not a shell's around it.
  (eval "exec $(cat "$d/apiserver.cmd")") >>"$d/apiserver.log" 2>&1 &
  echo $! >"$d/apiserver.pid"
}

wait_ready() {
  local d=$1 i
  for i in $(seq 1 120); do
    if KUBECONFIG="$d/kubeconfig" kubectl get --raw /readyz >/dev/null 2>&1; then
      log "ready after ${i}x0.5s on $(grep -o 'https://[^ ]*' "$d/kubeconfig")"
      return
    fi
    if ! kill -0 "$(cat "$d/apiserver.pid")" 2>/dev/null; then
      tail -20 "$d/apiserver.log" >&2; down "$d"; exit 1
    fi
    sleep 0.5
  done
  log "kube-apiserver did not become ready; see $d/apiserver.log"
  tail -20 "$d/apiserver.log" >&2
  down "$d"
  exit 1
}

stop_process() {
  local d=$1 f=$2 pid
  [ -f "$d/$f.pid" ] || return 0
  pid=$(cat "$d/$f.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$d/$f.pid"
}

down() {
  local d=$1 f
  stop_node "$d"
  for f in apiserver etcd; do
    stop_process "$d" "$f"
  done
  if [ -f "$d/etcd.data" ]; then
    rm -rf "$(cat "$d/etcd.data")" "$d/etcd.data"
  fi
}

case "${1:-}" in
  install)
    install_packages
    build_binaries kube-apiserver
    if [ "${2:-}" = --node ]; then build_binaries "${NODE_BINARIES[@]}"; fi
    ;;
  up) up "${2:?usage: $0 up DIR [--node|--bridge]}" "${3:-}" ;;
  down) down "${2:?usage: $0 down DIR}" ;;
  apiserver-stop) stop_process "${2:?usage: $0 apiserver-stop DIR}" apiserver ;;
  apiserver-start) start_apiserver "${2:?usage: $0 apiserver-start DIR}"; wait_ready "$2" ;;
  path) echo "$APISERVER" ;;
  *) echo "usage: $0 install [--node] | up DIR [--node|--bridge] | down DIR | apiserver-stop DIR | apiserver-start DIR | path" >&2; exit 2 ;;
esac
