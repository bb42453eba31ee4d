#!/usr/bin/env bash
# Runs prow-operator, prow-webhook and prow-dashboard on an embedded default: a local etcd + kube-apiserver with
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
if [ -n "$node" ]; then
  # The pod utilities' image (decorated jobs clone, wrap and upload with it): one cached static
  # build, then seconds.
  "$scripts/image.sh" >/dev/null
fi

state="${PROW_DEMO_DIR:-${TMPDIR:-/tmp}/prow-operator-demo}"
"$scripts/control-plane.sh" down "$state" 2>/dev/null || true
rm -rf "$state"
mkdir -p "$state"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$scripts/ci-services.sh" down "$state/services" 2>/dev/null || true
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
decorated=
if [ -n "$node" ]; then
  # A decorated presubmit as upstream writes one: the pod utilities clone acme/widgets from a
  # Git server on this machine, merge pull 101 into main, run the repository's own test script
  # and upload its log to an S3 server (SeaweedFS), where `prowctl logs` reads it later.
  mkdir -p "$state/services"
  set -a
  eval "$("$scripts/ci-services.sh" up "$state/services")"
  set +a
  repo="$PROW_TEST_GIT_DIR/widgets.git" work="$state/widgets"
  git init -q -b main "$work"
  (
    cd "$work"
    export GIT_AUTHOR_NAME=Alice GIT_AUTHOR_EMAIL=alice@example.org
    export GIT_COMMITTER_NAME=Alice GIT_COMMITTER_EMAIL=alice@example.org
    printf '#!/bin/sh\necho "testing $(cat VERSION) on $(pwd)"\ngrep -q faster CHANGES && echo "ok: the change is in"\n' >test.sh
    echo 1.0 >VERSION && echo "widgets" >CHANGES
    git add . && git commit -qm "widgets 1.0"
    git checkout -qb faster && echo "widgets: faster frobbing" >>CHANGES && git commit -qam "Make widgets faster"
    git init -q --bare "$repo" && git push -q "$repo" main faster:refs/pull/101/head
    git -C "$repo" symbolic-ref HEAD refs/heads/main && git -C "$repo" update-server-info
  )
  base=$(git -C "$work" rev-parse main) head=$(git -C "$work" rev-parse faster)
  kubectl create secret generic -n test-pods s3-credentials --from-literal=service-account.json="$(
    printf '{"region":"us-east-1","endpoint":"%s","insecure":true,"s3_force_path_style":true,"access_key":"%s","secret_key":"%s"}' \
      "$PROW_TEST_S3_ENDPOINT" "$PROW_TEST_S3_ACCESS_KEY" "$PROW_TEST_S3_SECRET_KEY")" >/dev/null
  kubectl apply -f - >/dev/null <<YAML
apiVersion: prow.k8s.io/v1
kind: ProwJob
metadata: {name: pull-decorated, namespace: prow}
spec:
  type: presubmit
  agent: kubernetes
  namespace: test-pods
  job: pull-widgets-test
  refs:
    org: acme
    repo: widgets
    base_ref: main
    base_sha: $base
    clone_uri: $PROW_TEST_GIT_URL/widgets.git
    pulls: [{number: 101, author: alice, sha: $head, title: Make widgets faster}]
  decoration_config:
    timeout: 10m
    gcs_configuration: {bucket: "s3://$PROW_TEST_S3_BUCKET", path_strategy: explicit}
    s3_credentials_secret: s3-credentials
  pod_spec:
    containers:
    - {image: prow-operator.local/toolbox:v1, imagePullPolicy: Never, command: [sh, ./test.sh]}
YAML
  decorated="
  prowctl logs -n prow pull-decorated      # the decorated presubmit's log: from its pod while it
                                           # runs, from the S3 bucket once it ended
  kubectl get pod -n test-pods pull-decorated -o jsonpath='{.spec.initContainers[*].name}'
                                           # clonerefs initupload place-entrypoint"
fi
# prow-dashboard: every job, a run's live or stored log, the pools and the definitions.
dash_flags=(--listen 127.0.0.1:8090 --namespace prow --namespace test-pods --pod-namespace test-pods)
if [ -n "$decorated" ]; then
  printf '{"region":"us-east-1","endpoint":"%s","insecure":true,"s3_force_path_style":true,"access_key":"%s","secret_key":"%s"}' \
    "$PROW_TEST_S3_ENDPOINT" "$PROW_TEST_S3_ACCESS_KEY" "$PROW_TEST_S3_SECRET_KEY" >"$state/s3-credentials.json"
  dash_flags+=(--s3-credentials-file "$state/s3-credentials.json")
fi
"$root/target/debug/prow-dashboard" "${dash_flags[@]}" >"$state/dashboard.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:8090/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
dashboard="http://127.0.0.1:8090/"
if [ -n "$decorated" ]; then
  decorated="$decorated
  open ${dashboard}jobs/prow/pull-decorated  # its page: refs, live log while it runs, the stored
                                           # log and artifacts after"
fi

cat <<MSG

The dashboard: $dashboard   (jobs, live and stored logs, history, pools, definitions)

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
  curl -s 127.0.0.1:8080/metrics           # operator metrics$decorated

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
    for _ in $(seq 1 120); do
      [ -n "$(kubectl get prowjob -n prow pull-decorated -o jsonpath='{.status.completionTime}')" ] && break
      sleep 1
    done
    echo "the decorated presubmit pull-decorated: $(kubectl get prowjob -n prow pull-decorated -o jsonpath='{.status.state}')"
    "$root/target/debug/prowctl" logs -n prow pull-decorated 2>"$state/prowctl-logs.txt" | sed 's/^/  /'
    sed 's/^/  /' "$state/prowctl-logs.txt"
    grep -q "log from storage s3://" "$state/prowctl-logs.txt" ||
      { echo "the decorated job's log is not in the bucket" >&2; exit 1; }
    kubectl delete pod -n test-pods pull-decorated --wait=true >/dev/null
    page=$(curl -fs "${dashboard}jobs/prow/pull-decorated")
    grep -q "ok: the change is in" <<<"$page" ||
      { echo "the dashboard does not show the decorated job's stored log" >&2; exit 1; }
    echo "the dashboard shows pull-decorated's log from the bucket after its pod is gone: ${dashboard}jobs/prow/pull-decorated"
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
  curl -fs "$dashboard" | grep -q "unit-passes" || { echo "the dashboard does not list the jobs" >&2; exit 1; }
  curl -fs "${dashboard}pools" | grep -q "e2e-us-1" || { echo "the dashboard does not show the pool" >&2; exit 1; }
  echo "the dashboard lists the jobs and the pool at $dashboard"
  echo "examples/rejected/bad-job.yaml refused, both objects:"
  sed 's/^/  /' "$state/rejected.txt"
  exit 0
fi
kubectl get prowjobs -n prow -w
