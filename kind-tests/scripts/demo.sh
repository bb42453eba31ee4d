#!/usr/bin/env bash
# Runs prow-operator and prow-webhook on an embedded default: a local etcd + kube-apiserver with
# a real node (a kubelet on the local Docker engine), the CRDs and the objects in examples/,
# whose jobs run as real containers. Where no node can run (no Docker engine), it says why and
# falls back to a stand-in kubelet that moves the pods through their phases. Ctrl-C stops
# everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
scripts=kind-tests/scripts

node=--node
if ! "$scripts/control-plane.sh" install --node; then
  echo "demo: the real node could not be installed (see above): falling back to the stand-in kubelet" >&2
  "$scripts/control-plane.sh" install
  node=
fi
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
if [ -n "$node" ] && KUBECONFIG=$("$scripts/control-plane.sh" up "$state" --node); then
  kubelet="a real kubelet on the local Docker engine (node-1)"
else
  if [ -n "$node" ]; then
    echo "demo: the real node did not start (logs in $state): falling back to the stand-in kubelet" >&2
    "$scripts/control-plane.sh" down "$state" 2>/dev/null || true
  fi
  KUBECONFIG=$("$scripts/control-plane.sh" up "$state")
  node=
  kubelet="the stand-in kubelet (no Docker engine here): pods are moved through their phases, nothing runs"
fi
kubectl apply --server-side -f charts/prow-operator/crds/ >/dev/null
kubectl wait --for condition=established --timeout=30s crd --all >/dev/null

# The cimaster-compatible API on loopback, without tokens: a local demo only.
"$root/target/debug/prow-operator" --listen 127.0.0.1:8080 --pod-namespace test-pods \
  --pod-deletion-grace-seconds 0 --compat-listen 127.0.0.1:8082 --compat-pool gke-e2e \
  --compat-allow-anonymous >"$state/operator.log" 2>&1 &
pids+=($!)
# The webhook over TLS, registered with the API server by URL (no Service here).
certs="$state/webhook-certs"
mkdir -p "$certs"
(
  cd "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=prow-demo-ca" -keyout ca.key -out ca.crt 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=prow-webhook" -keyout tls.key -out tls.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile san.ext -out tls.crt 2>/dev/null
)
"$root/target/debug/prow-webhook" --listen 127.0.0.1:8443 --probe-listen 127.0.0.1:8081 \
  --tls-cert-file "$certs/tls.crt" --tls-key-file "$certs/tls.key" --pod-namespace test-pods \
  >"$state/webhook.log" 2>&1 &
pids+=($!)
if [ -z "$node" ]; then
  "$root/target/debug/fake-kubelet" "$KUBECONFIG" >"$state/fake-kubelet.log" 2>&1 &
  pids+=($!)
fi

for port in 8080 8081; do
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

# The same hooks as the chart registers (its files/admission-hooks.json), by URL.
python3 - "$(base64 -w0 "$certs/ca.crt")" charts/prow-operator/files/admission-hooks.json <<'PY' |
import json, sys
ca, hooks = sys.argv[1], json.load(open(sys.argv[2]))
for kind, prefix in (("Mutating", "mutate"), ("Validating", "validate")):
    print("---\napiVersion: admissionregistration.k8s.io/v1")
    print(f"kind: {kind}WebhookConfiguration\nmetadata: {{name: prow-webhook}}\nwebhooks:")
    for h in hooks[f"{prefix[:-1]}ing"]:
        print(f"- name: {prefix}-{h['resource']}.prow-operator.dev")
        print(f"  clientConfig: {{url: 'https://127.0.0.1:8443/{prefix}/{h['resource']}', caBundle: '{ca}'}}")
        print(f"  rules: [{{apiGroups: ['{h['group']}'], apiVersions: ['*'], resources: ['{h['resource']}'], operations: {json.dumps(h['operations'])}}}]")
        print("  admissionReviewVersions: [v1]\n  sideEffects: None\n  failurePolicy: Fail")
PY
  kubectl apply -f - >/dev/null
sleep 2 # the API server picks up new webhook configurations within a moment

# Presets first, so the webhook's cache has them when the jobs arrive.
kubectl apply -f examples/00-namespaces.yaml -f examples/10-presets.yaml >/dev/null
# With a real node, pods need their namespace's default ServiceAccount (the controller manager
# makes it within a moment), and so does the webhook's dry run of each job's pod.
for _ in $(seq 1 100); do
  [ -z "$node" ] && break
  kubectl get serviceaccount default -n test-pods >/dev/null 2>&1 && break
  sleep 0.2
done
sleep 1
kubectl apply -f examples/ >/dev/null
cat <<MSG

prow-operator is running on a local control plane with the objects from examples/; pods run on
$kubelet.
In another terminal:

  export KUBECONFIG=$KUBECONFIG
  kubectl get prowjobs -n prow -w          # jobs move triggered -> pending -> success/failure
  kubectl get pods -n test-pods            # one pod per job, named after it
  kubectl get testclusters,presets -A      # the cluster pool (one leased to e2e-leases-a-cluster) and the presets
  curl -s '127.0.0.1:8082/getvacant?build=1&job=e2e'   # cimaster's API: leases the other cluster
  curl -s '127.0.0.1:8082/finishtest?cluster=e2e-us-1' # and gives it back
  kubectl describe prowjob -n prow lint-fails   # Events: Pending, Failed
  kubectl logs -n test-pods lint-fails     # what the failing job printed, and why it failed
  kubectl get prowjob -n prow unit-passes -o jsonpath='{.metadata.annotations}{"\\n"}{.spec.pod_spec.containers[0].env}{"\\n"}'
                                           # the go-cache preset, injected by the webhook
  kubectl create -n prow -f examples/rejected/bad-job.yaml   # refused, with the field path
  curl -s 127.0.0.1:8080/metrics           # operator metrics

Logs: $state/*.log (operator, webhook, apiserver, kubelet)
Press Ctrl-C to stop.

MSG
if [ "${PROW_DEMO_ONCE:-}" = 1 ]; then
  # Non-interactive check: wait for the example jobs to finish, print them, stop.
  for _ in $(seq 1 120); do
    done_count=$(kubectl get prowjobs -n prow -o jsonpath='{range .items[*]}{.status.completionTime}{"\n"}{end}' | grep -c . || true)
    [ "$done_count" -ge 6 ] && break
    sleep 1
  done
  kubectl get prowjobs -n prow
  echo "presets injected into unit-passes: $(kubectl get prowjob -n prow unit-passes -o jsonpath='{.metadata.annotations.prow-operator\.dev/presets}')"
  leased=$(kubectl get prowjob -n prow e2e-leases-a-cluster -o jsonpath='{.status.testCluster}')
  [ -n "$leased" ] || { echo "e2e-leases-a-cluster leased no test cluster" >&2; exit 1; }
  echo "e2e-leases-a-cluster ran on test cluster $leased; the pool now:"
  if [ -n "$node" ]; then
    kubectl logs -n test-pods e2e-leases-a-cluster | sed 's/^/  /'
  fi
  kubectl get testclusters -n test-pods
  vacant=$(curl -s '127.0.0.1:8082/getvacant?build=1&job=demo')
  echo "cimaster API: getvacant -> $vacant; finishtest -> $(curl -s "127.0.0.1:8082/finishtest?cluster=$vacant")"
  if [ -n "$node" ]; then
    echo "kubectl logs -n test-pods lint-fails:"
    kubectl logs -n test-pods lint-fails | sed 's/^/  /'
    kubectl logs -n test-pods unit-passes | grep -q 'ok: 12 passed' ||
      { echo "unit-passes did not really run" >&2; exit 1; }
  fi
  # Both objects of the file (a ProwJob and a JobDefinition) must be refused, each by its hook.
  if kubectl create -n prow -f examples/rejected/bad-job.yaml 2>"$state/rejected.txt"; then
    echo "the rejected example was admitted: the webhook is not working" >&2
    exit 1
  fi
  for object in prowjob/rejected jobdefinition/pull-widgets-broken; do
    if kubectl get -n prow "$object" >/dev/null 2>&1; then
      echo "$object of examples/rejected/bad-job.yaml was admitted: its hook is not registered" >&2
      exit 1
    fi
    grep -q "admission webhook \"validate-${object%%/*}s.prow-operator.dev\" denied" "$state/rejected.txt" ||
      { echo "$object was not refused by its webhook: $(cat "$state/rejected.txt")" >&2; exit 1; }
  done
  echo "examples/rejected/bad-job.yaml refused, both objects:"
  sed 's/^/  /' "$state/rejected.txt"
  exit 0
fi
kubectl get prowjobs -n prow -w
