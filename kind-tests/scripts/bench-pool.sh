#!/usr/bin/env bash
# Benchmark of TestCluster leasing: 200 jobs contend for 20 clusters of one pool, against a
# fresh local control plane, with release builds. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=kind-tests/scripts
"$scripts/control-plane.sh" install
cargo build --release --locked --bins
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-operator-bench-pool.XXXXXX")
trap '"$scripts/control-plane.sh" down "$state"; rm -rf "$state"' EXIT
kubeconfig=$("$scripts/control-plane.sh" up "$state")
PROW_TEST_KUBECONFIG=$kubeconfig target/release/bench-pool "$kubeconfig" "$PWD/target/release/prow-operator"
