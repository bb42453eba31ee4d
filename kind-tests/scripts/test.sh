#!/usr/bin/env bash
# The whole test suite, as CI runs it: format, lints, unit tests, and the integration tests
# against a real etcd + kube-apiserver started for this run and stopped after it.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts=kind-tests/scripts
# The real-node tier needs Docker's engine and the node binaries (built once, cached); where
# they cannot be had it is skipped with one line, except under CI=true, where it must run.
node=--node
if ! "$scripts/control-plane.sh" install --node; then
  [ "${CI:-}" != true ] || { echo "real node: install failed under CI=true" >&2; exit 1; }
  echo "== real-node tier skipped: the node's install failed (see above)"
  "$scripts/control-plane.sh" install
  node=
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo build --bins"
cargo build --bins --locked

state=$(mktemp -d "${TMPDIR:-/tmp}/prow-operator-test.XXXXXX")
mkdir -p "$state/plane" "$state/node"
mkdir -p "$state/services"
trap '"$scripts/ci-services.sh" down "$state/services"; "$scripts/control-plane.sh" down "$state/node"; "$scripts/control-plane.sh" down "$state/plane"; rm -rf "$state"' EXIT
start=$(date +%s%N)
PROW_TEST_KUBECONFIG=$("$scripts/control-plane.sh" up "$state/plane")
export PROW_TEST_KUBECONFIG
echo "== control plane up in $((($(date +%s%N) - start) / 1000000)) ms"
# A second control plane with a real node, for the real-node tier (tests/real_node.rs); the
# first has none, so that the stand-in tier's pods are moved by the tests alone.
if [ -n "$node" ]; then
  start=$(date +%s%N)
  if PROW_TEST_NODE_KUBECONFIG=$("$scripts/control-plane.sh" up "$state/node" --node); then
    export PROW_TEST_NODE_KUBECONFIG
    echo "== control plane with a real node up in $((($(date +%s%N) - start) / 1000000)) ms"
  else
    tail -20 "$state"/node/*.log 2>/dev/null || true
    [ "${CI:-}" != true ] || { echo "real node: did not start under CI=true" >&2; exit 1; }
    echo "== real-node tier skipped: the node did not start (logs above)"
  fi
fi

status=0
if [ -n "${PROW_TEST_NODE_KUBECONFIG:-}" ]; then
  # The images: the operator's (for the chart's install tests on the node) and the pod
  # utilities' (every decorated job on the node runs them), from one cached static build.
  echo "== images (kind-tests/scripts/image.sh)"
  kind-tests/scripts/image.sh || status=1
  # The S3 server and the Git server decorated jobs talk to, on the Docker bridge.
  echo "== S3 and Git servers (kind-tests/scripts/ci-services.sh)"
  if services=$("$scripts/ci-services.sh" up "$state/services"); then
    set -a
    eval "$services"
    set +a
  else
    tail -20 "$state"/services/*.log 2>/dev/null || true
    [ "${CI:-}" != true ] || { echo "ci-services: did not start under CI=true" >&2; exit 1; }
  fi
fi

# Debian's Chromium and ChromeDriver for prow-dashboard's page tests (tests/dashboard.rs).
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  echo "== installing chromium and chromium-driver (the dashboard's page tests)"
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  if ! { $sudo apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    [ "${CI:-}" != true ] || { echo "chromium: not installed under CI=true" >&2; exit 1; }
    echo "== dashboard page tests skipped: chromium could not be installed"
  fi
fi
export PROW_TEST_SCREENSHOTS="${PROW_TEST_SCREENSHOTS:-$PWD/target/screenshots}"

# GitHub's real webhook payloads for prow-hook's tests (npm, cached).
if PROW_TEST_WEBHOOK_EXAMPLES=$("$scripts/webhook-examples.sh"); then
  export PROW_TEST_WEBHOOK_EXAMPLES
else
  [ "${CI:-}" != true ] || { echo "webhook examples: not installed under CI=true" >&2; exit 1; }
  echo "== prow-hook tests skipped: @octokit/webhooks-examples could not be fetched"
fi

echo "== cargo test"
log="$state/cargo-test.log"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# What a failed run on another machine needs to be read: the disk, and what the node's kubelet
# said about images, evictions and the disk.
if [ "$status" != 0 ]; then
  echo "== after the failed cargo test: disk, and the kubelet on images and evictions"
  df -h . "${TMPDIR:-/tmp}" /var/lib/docker 2>/dev/null || true
  grep -h -i -E "garbage|evict|disk|ErrImageNeverPull|image .* not present" "$state"/node/kubelet.log \
    2>/dev/null | tail -30 || true
fi

# The Helm chart: lint, render, schema, a server-side dry run of what it renders, and an
# install into the cluster with the real node (install, RBAC, upgrade, uninstall).
echo "== chart tests (helm-python-sdk)"
chart_log="$state/chart-tests.log"
kind-tests/scripts/chart-tests.sh 2>&1 | tee "$chart_log" || status=1

# The same install tests on kind, where kind and Docker are present (one line where not).
kind-tests/scripts/kind-install-test.sh 2>&1 | tee -a "$chart_log" || status=1

# A short bounded fuzz of the admission path (any bytes to every endpoint) and of prow-hook's
# deliveries; their seeds and corpora are replayed by the unit tests above as well.
echo "== fuzz the admission path and prow-hook's deliveries (${PROW_FUZZ_SECONDS:-60} s)"
kind-tests/scripts/fuzz.sh "${PROW_FUZZ_SECONDS:-60}" >"$state/fuzz.log" 2>&1 || {
  status=1
  tail -40 "$state/fuzz.log"
  echo "fuzz: FAILED (crash input in fuzz/artifacts/)"
}
grep -E "^Done [0-9]+ runs|^stat::number_of_executed_units" "$state/fuzz.log" || true
# One closing line for the whole run (cargo prints one per test binary, the last often a
# doc-test binary with nothing in it).
# pytest's summary ("25 passed in 4.9s", "1 failed, 24 passed in ...") is counted too.
awk '/^test result:/ || /^[0-9]+ (passed|failed)/ || /^=+ [0-9]+ (passed|failed)/ {
       for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log" "$chart_log"
# Only the end of a failed run may be kept where it is read, so the failed tests' names and the
# first lines of what each printed come last.
if [ "$status" != 0 ]; then
  echo "== what failed"
  grep -E "^test .* FAILED$|^[A-Za-z_/.]+::[A-Za-z_:]+ FAILED|^FAILED " "$log" "$chart_log" | sort -u | head -20 || true
  awk '/^---- .* stdout ----$/ { n = 0; on = 1 } on && n < 25 { print; n++ } /^failures:$/ && on { on = 0 }' \
    "$log" | grep -v -E "^(W|I)[0-9]{4} " | head -120 || true
fi
exit "$status"
