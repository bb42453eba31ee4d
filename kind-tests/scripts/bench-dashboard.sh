#!/usr/bin/env bash
# Benchmark of prow-dashboard against a fresh local control plane and S3 server, with release
# builds: 100,000 finished ProwJobs stored (time to ready, RSS), the jobs page with and without
# filters (p50/p95/p99), and a 200 MB stored log (first byte of its page and of ?raw, a search
# over it). Prints figures; asserts nothing. Storing the jobs takes several minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=kind-tests/scripts
"$scripts/control-plane.sh" install
cargo build --release --locked -p prow-dashboard -p kind-tests --bin prow-dashboard --bin bench-dashboard
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-dashboard-bench.XXXXXX")
mkdir -p "$state/plane" "$state/services"
trap '"$scripts/ci-services.sh" down "$state/services"; "$scripts/control-plane.sh" down "$state/plane"; rm -rf "$state"' EXIT
kubeconfig=$("$scripts/control-plane.sh" up "$state/plane")
set -a
eval "$("$scripts/ci-services.sh" up "$state/services")"
set +a
# The dashboard's own log lines only for warnings: the figures are what is printed.
RUST_LOG=warn target/release/bench-dashboard "$kubeconfig"
