#!/usr/bin/env bash
# Benchmark of the operator with 100,000 finished jobs and their pods spread over three local
# clusters (the operator's own and two build clusters), with release builds: start -> ready,
# RSS, and job create -> pod seen against plain pod creates in the same run. Prints figures;
# asserts nothing. Storing the jobs takes several minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=kind-tests/scripts
"$scripts/control-plane.sh" install
cargo build --release --locked -p prow-operator -p kind-tests --bin prow-operator --bin bench-build-clusters
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-operator-bench-100k.XXXXXX")
trap 'for p in control b1 b2; do "$scripts/control-plane.sh" down "$state/$p"; done; rm -rf "$state"' EXIT
control=$("$scripts/control-plane.sh" up "$state/control")
b1=$("$scripts/control-plane.sh" up "$state/b1")
b2=$("$scripts/control-plane.sh" up "$state/b2")
# The operator's own log lines only for warnings unless RUST_LOG says otherwise: the figures
# are what is printed.
# BENCH_RELIST=1 also restarts the control plane's API server at the end: RSS over the relist.
if [ -n "${BENCH_RELIST:-}" ]; then export BENCH_RELIST_PLANE="$state/control"; fi
RUST_LOG="${RUST_LOG:-warn}" target/release/bench-build-clusters "$control" "$b1" "$b2" "$PWD/target/release/prow-operator"
