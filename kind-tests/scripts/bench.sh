#!/usr/bin/env bash
# Benchmarks of the operator against a fresh local control plane, with release builds.
# Prints figures; asserts nothing. Takes a few minutes (most of it storing 10,000 jobs).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=kind-tests/scripts
"$scripts/control-plane.sh" install
cargo build --release --locked --bins
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-operator-bench.XXXXXX")
trap '"$scripts/control-plane.sh" down "$state"; rm -rf "$state"' EXIT
kubeconfig=$("$scripts/control-plane.sh" up "$state")
# BENCH_BINARY picks another benchmark of the same shape (bench-pool.sh sets it).
PROW_TEST_KUBECONFIG=$kubeconfig target/release/"${BENCH_BINARY:-bench-operator}" "$kubeconfig" "$PWD/target/release/prow-operator"
