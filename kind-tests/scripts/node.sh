# A real node beside the local control plane: Docker's engine, kubelet, kube-scheduler and
# kube-controller-manager (shared/docs/real-node.md). Sourced by control-plane.sh, which defines
# log, as_root, cached, CACHE_DIR and K8S_VERSION; not run on its own.
#
# One node per machine: two kubelets on one Docker engine would take each other's containers.

NODE_NAME=node-1
# docker0's address (172.17.0.1 unless Docker chose another subnet; read once the engine runs):
# the API server reaches the kubelet there, pods reach the API server there. The kubelet
# refuses a loopback --node-ip, and nothing may listen on the outer interface.
BRIDGE_IP=172.17.0.1

bridge_ip() {
  docker network inspect bridge -f '{{(index .IPAM.Config 0).Gateway}}' 2>/dev/null || echo 172.17.0.1
}
TOOLBOX_IMAGE=prow-operator.local/toolbox:v1
PAUSE_IMAGE=k8s.gcr.io/pause:3.2

# Whether the engine runs a container that asks for a negative OOM score, as kubelet asks for
# every pod sandbox (this machine's sandbox refuses negative scores to runc).
engine_works() {
  docker info >/dev/null 2>&1 &&
    docker run --rm --oom-score-adj -998 "$PAUSE_IMAGE" -v >/dev/null 2>&1 </dev/null
}

# A runc that raises negative oomScoreAdj values in the OCI bundle to 0, then runs the real one.
install_runc_wrapper() {
  as_root tee /usr/local/bin/runc-clamp >/dev/null <<'EOF'
#!/bin/sh
bundle=""; prev=""
for a in "$@"; do
  case "$prev" in --bundle|-b) bundle="$a";; esac
  case "$a" in --bundle=*) bundle="${a#--bundle=}";; esac
  prev="$a"
done
[ -n "$bundle" ] && [ -f "$bundle/config.json" ] &&
  sed -i -E 's/"oomScoreAdj":-[0-9]+/"oomScoreAdj":0/' "$bundle/config.json"
exec /usr/sbin/runc "$@"
EOF
  as_root chmod +x /usr/local/bin/runc-clamp
  as_root mkdir -p /etc/docker
  echo '{"runtimes":{"runc-clamp":{"path":"/usr/local/bin/runc-clamp"}},"default-runtime":"runc-clamp"}' |
    as_root tee /etc/docker/daemon.json >/dev/null
}

start_dockerd() {
  log "starting dockerd (log in $CACHE_DIR/dockerd.log)"
  (as_root dockerd >>"$CACHE_DIR/dockerd.log" 2>&1 &)
  local i
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 0.5
  done
  log "dockerd did not start; see $CACHE_DIR/dockerd.log"
  return 1
}

# Installs and starts Docker's engine where it is missing; an engine that works is used as it is.
ensure_engine() {
  mkdir -p "$CACHE_DIR"
  if ! command -v dockerd >/dev/null; then
    log "installing docker.io"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq docker.io >/dev/null
  fi
  docker info >/dev/null 2>&1 || start_dockerd
  build_pause_image
  BRIDGE_IP=$(bridge_ip)
  engine_works && return
  log "the engine refuses negative OOM scores here: registering the runc-clamp wrapper"
  install_runc_wrapper
  as_root pkill -x dockerd || true
  local i
  for i in $(seq 1 40); do pgrep -x dockerd >/dev/null || break; sleep 0.25; done
  start_dockerd
  engine_works || { log "containers do not start on this engine"; return 1; }
  BRIDGE_IP=$(bridge_ip)
}

build_pause_image() {
  docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return
  local root
  root=$(mktemp -d)
  cp "$(cached pause)" "$root/pause"
  tar -C "$root" -c pause | docker import -c 'ENTRYPOINT ["/pause"]' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$root"
}

# The image jobs run in: Debian's static busybox (sh and the usual tools), kubectl (static) and
# git (with the libraries it links).
build_toolbox_image() {
  docker image inspect "$TOOLBOX_IMAGE" >/dev/null 2>&1 && return
  local packages=()
  dpkg -s busybox-static >/dev/null 2>&1 || packages+=(busybox-static)
  [ -x /usr/bin/git ] || packages+=(git)
  if [ "${#packages[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
  local root tool lib git
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/usr/bin" "$root/usr/lib/git-core" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  for tool in $(/bin/busybox --list); do
    [ "$tool" = busybox ] || ln -sf busybox "$root/bin/$tool"
  done
  cp -L "$(command -v kubectl)" "$root/usr/bin/kubectl"
  git=/usr/bin/git
  cp "$git" "$root/usr/bin/git"
  for lib in $(ldd "$git" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  # The helpers a local clone runs are git itself under other names.
  for tool in git-upload-pack git-receive-pack git-upload-archive; do
    ln -sf /usr/bin/git "$root/usr/lib/git-core/$tool"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>"$root/etc/passwd"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . |
    docker import -c 'ENV PATH=/usr/bin:/bin' -c 'CMD ["sh"]' - "$TOOLBOX_IMAGE" >/dev/null
  rm -rf "$root"
  log "built $TOOLBOX_IMAGE"
}

# Starts kube-controller-manager, kube-scheduler and a kubelet for the control plane in $1 and
# waits until the node is Ready.
start_node() {
  local d=$1 kc=$1/kubeconfig
  if pgrep -f "^$(cached kubelet) " >/dev/null; then
    log "another node's kubelet runs on this machine; stop it first (one node per machine)"
    return 1
  fi
  # Pod containers left by a node that was killed rather than stopped.
  docker ps -aq --filter name=k8s_ | xargs -r docker rm -f >/dev/null 2>&1 || true
  # Marks this control plane as the node's owner before anything starts, so `down` cleans up.
  mkdir -p "$d/kubelet"
  echo "$d/kubelet" >"$d/kubelet.root"
  "$(cached kube-controller-manager)" --kubeconfig="$kc" --leader-elect=false --port=0 \
    --secure-port=0 --service-account-private-key-file="$d/sa.key" --root-ca-file="$d/ca.crt" \
    --use-service-account-credentials=true --controllers='*,-nodeipam,-cloud-node-lifecycle' \
    >"$d/controller-manager.log" 2>&1 &
  echo $! >"$d/controller-manager.pid"
  "$(cached kube-scheduler)" --kubeconfig="$kc" --leader-elect=false --port=0 --secure-port=0 \
    >"$d/scheduler.log" 2>&1 &
  echo $! >"$d/scheduler.pid"
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
evictionHard: {}
# No image garbage collection: the node's images (the toolbox, the operator's, the pod
# utilities', the pause image) come from no registry, so one collected is gone for the run. By
# default the kubelet collects unused images when the disk is 85% full, which a CI machine's
# disk can be.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Volume usage measured every 5 s (default 1 min), so a pod over its emptyDir limit is evicted
# within seconds.
volumeStatsAggPeriod: 5s
EOF
  "$(cached kubelet)" --kubeconfig="$kc" --config="$d/kubelet.yaml" --container-runtime=docker \
    --root-dir="$d/kubelet" --hostname-override="$NODE_NAME" --node-ip="$BRIDGE_IP" \
    --pod-infra-container-image="$PAUSE_IMAGE" >"$d/kubelet.log" 2>&1 &
  echo $! >"$d/kubelet.pid"
  local i ready
  for i in $(seq 1 240); do
    ready=$(KUBECONFIG=$kc kubectl get node "$NODE_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    if [ "$ready" = True ]; then
      log "node $NODE_NAME Ready after ${i}x0.5s"
      return
    fi
    if ! kill -0 "$(cat "$d/kubelet.pid")" 2>/dev/null; then
      tail -20 "$d/kubelet.log" >&2
      return 1
    fi
    sleep 0.5
  done
  log "node $NODE_NAME not Ready in 120 s; see $d/kubelet.log"
  tail -20 "$d/kubelet.log" >&2
  return 1
}

# Stops the node of the control plane in $1 and leaves no container, mount or directory behind.
stop_node() {
  local d=$1 f root
  # Only a control plane that started a node owns the engine's pod containers.
  [ -f "$d/kubelet.root" ] || return 0
  for f in kubelet scheduler controller-manager; do
    stop_process "$d" "$f"
  done
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker ps -aq --filter name=k8s_ | xargs -r docker rm -f >/dev/null 2>&1 || true
  fi
  root=$(cat "$d/kubelet.root")
  # Secrets and projected tokens are tmpfs mounts under the kubelet's root.
  awk -v r="$root" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
    xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$root" "$d/kubelet.root"
}
