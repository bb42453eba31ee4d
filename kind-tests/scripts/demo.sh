#!/usr/bin/env bash
# Runs prow-operator and prow-webhook on an embedded default: a local etcd + kube-apiserver,
# the CRDs, the objects in examples/, and a stand-in kubelet that runs the example jobs' pods
# to an end. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
scripts=kind-tests/scripts

"$scripts/control-plane.sh" install
cargo build --bins --locked

state="${PROW_DEMO_DIR:-${TMPDIR:-/tmp}/prow-operator-demo}"
"$scripts/control-plane.sh" down "$state" 2>/dev/null || true
rm -rf "$state"
mkdir -p "$state"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$scripts/control-plane.sh" down "$state"
  echo "demo stopped; logs were in $state"
}
trap cleanup EXIT

export KUBECONFIG
KUBECONFIG=$("$scripts/control-plane.sh" up "$state")
kubectl apply --server-side -f charts/prow-operator/crds/ >/dev/null
kubectl wait --for condition=established --timeout=30s crd --all >/dev/null

"$root/target/debug/prow-operator" --listen 127.0.0.1:8080 --pod-namespace test-pods \
  --pod-deletion-grace-seconds 0 >"$state/operator.log" 2>&1 &
pids+=($!)
"$root/target/debug/prow-webhook" --listen 127.0.0.1:8081 >"$state/webhook.log" 2>&1 &
pids+=($!)
"$root/target/debug/fake-kubelet" "$KUBECONFIG" >"$state/kubelet.log" 2>&1 &
pids+=($!)

for port in 8080 8081; do
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

kubectl apply -f examples/ >/dev/null
cat <<MSG

prow-operator is running on a local control plane with the objects from examples/.
In another terminal:

  export KUBECONFIG=$KUBECONFIG
  kubectl get prowjobs -n prow -w          # jobs move triggered -> pending -> success/failure
  kubectl get pods -n test-pods            # one pod per job, named after it
  kubectl get testclusters,presets -A      # the cluster pool and the presets
  kubectl describe prowjob -n prow lint-fails   # Events: Pending, Failed
  curl -s 127.0.0.1:8080/metrics           # operator metrics

Logs: $state/{operator,webhook,kubelet,apiserver}.log
Press Ctrl-C to stop.

MSG
if [ "${PROW_DEMO_ONCE:-}" = 1 ]; then
  # Non-interactive check: wait for the example jobs to finish, print them, stop.
  for _ in $(seq 1 120); do
    done_count=$(kubectl get prowjobs -n prow -o jsonpath='{range .items[*]}{.status.completionTime}{"\n"}{end}' | grep -c . || true)
    [ "$done_count" -ge 5 ] && break
    sleep 1
  done
  kubectl get prowjobs -n prow
  exit 0
fi
kubectl get prowjobs -n prow -w
