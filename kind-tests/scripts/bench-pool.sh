#!/usr/bin/env bash
# Benchmark of TestCluster leasing: 200 jobs contend for 20 clusters of one pool, against a
# fresh local control plane, with release builds. Prints figures; asserts nothing. The same
# steps as bench.sh, with the pool benchmark.
set -euo pipefail
BENCH_BINARY=bench-pool exec "$(dirname "$0")/bench.sh"
