#!/usr/bin/env bash
# Benchmark of prow-hook against a fresh local control plane, with release builds: delivery ->
# ProwJobs created at 50/s with 20 presubmits a repository (and the API server's create beside
# it), events per second at saturation, and RSS with 10,000 JobDefinitions. Prints figures;
# asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=kind-tests/scripts
"$scripts/control-plane.sh" install
PROW_TEST_WEBHOOK_EXAMPLES=$("$scripts/webhook-examples.sh")
export PROW_TEST_WEBHOOK_EXAMPLES
cargo build --release --locked -p prow-hook -p kind-tests --bin prow-hook --bin bench-hook
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-hook-bench.XXXXXX")
trap '"$scripts/control-plane.sh" down "$state"; rm -rf "$state"' EXIT
kubeconfig=$("$scripts/control-plane.sh" up "$state")
# The hook's own log lines only for warnings: the figures are what is printed.
RUST_LOG=warn PROW_TEST_KUBECONFIG=$kubeconfig target/release/bench-hook "$kubeconfig"
