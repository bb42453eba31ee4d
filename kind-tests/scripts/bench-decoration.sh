#!/usr/bin/env bash
# Benchmark of decoration's overhead on the real node: 50 decorated jobs against 50
# undecorated ones, time from pod creation to the test's first line (p50, p99), and the
# utility image's size. Starts its own node, S3 and Git servers; release builds. Prints
# figures; asserts nothing. About five minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts=kind-tests/scripts
"$scripts/control-plane.sh" install --node
cargo build --release --locked --bins
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-operator-bench.XXXXXX")
mkdir -p "$state/node" "$state/services"
trap '"$scripts/ci-services.sh" down "$state/services"; "$scripts/control-plane.sh" down "$state/node"; rm -rf "$state"' EXIT
PROW_TEST_NODE_KUBECONFIG=$("$scripts/control-plane.sh" up "$state/node" --node)
export PROW_TEST_NODE_KUBECONFIG
"$scripts/image.sh" >/dev/null
set -a
eval "$("$scripts/ci-services.sh" up "$state/services")"
set +a
target/release/bench-decoration
image=$(docker image inspect -f '{{.Size}}' "prow-operator.local/prow-utils:$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)")
echo "utility image (prow-utils and git): $(awk -v s="$image" 'BEGIN {printf "%.1f MB", s / 1e6}')"
