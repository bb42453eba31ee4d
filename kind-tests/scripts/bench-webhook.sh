#!/usr/bin/env bash
# Benchmark of the admission webhook against a fresh local control plane, with release builds.
# Prints figures; asserts nothing. Needs wrk for the throughput part (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=kind-tests/scripts
"$scripts/control-plane.sh" install
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked --bins
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-webhook-bench.XXXXXX")
trap '"$scripts/control-plane.sh" down "$state"; rm -rf "$state"' EXIT
kubeconfig=$("$scripts/control-plane.sh" up "$state")
PROW_TEST_KUBECONFIG=$kubeconfig target/release/bench-webhook "$kubeconfig"
