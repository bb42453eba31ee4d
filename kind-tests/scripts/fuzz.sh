#!/usr/bin/env bash
# Fuzzes the admission path (fuzz/fuzz_targets/admission_review.rs: any bytes to every
# endpoint) and prow-hook's deliveries (fuzz/fuzz_targets/hook_delivery.rs) for SECONDS in all
# (default 60) with libFuzzer through cargo-fuzz, starting from the seeds and corpus kept in
# fuzz/. New inputs go to a scratch directory, so the repository's corpus changes only
# when someone minimises and commits a run's (see README). A crash fails the run and leaves its
# input in fuzz/artifacts/ with the command that replays it.
#
#   kind-tests/scripts/fuzz.sh [SECONDS]
#
# Works on the stable toolchain: without a sanitizer, cargo-fuzz needs no nightly flags.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-60}
cache="${PROW_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prow-operator}"
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz (once per machine)" >&2
  cargo install --locked cargo-fuzz --version 0.13.2 >&2
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/prow-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# Two targets share the time: the admission path two thirds, prow-hook's deliveries a third
# (its rules are pure and fast). Both are built in one instrumented build, cached outside the
# work tree: about 7 minutes cold on 2 cores.
hook_seconds=$((seconds / 3))
admission_seconds=$((seconds - hook_seconds))
run() {
  local target=$1 time=$2
  mkdir -p "$scratch/$target"
  local dirs=("$scratch/$target" "fuzz/seeds/$target")
  [ -d "fuzz/corpus/$target" ] && dirs+=("fuzz/corpus/$target")
  cargo fuzz run --sanitizer none --codegen-units 16 --target-dir "$cache/fuzz-target" \
    "$target" "${dirs[@]}" -- \
    -max_total_time="$time" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
}
run admission_review "$admission_seconds"
run hook_delivery "$hook_seconds"
