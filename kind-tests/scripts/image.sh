#!/usr/bin/env bash
# Builds the image the chart runs by default, with no registry: both binaries statically
# linked on the host (glibc, `+crt-static`), then the Dockerfile's `prebuilt` stage (FROM
# scratch) around them. The Cargo build is cached outside the work tree.
#
#   kind-tests/scripts/image.sh [TAG]     # default: the chart's appVersion
#
# Prints the image's name. Needs Docker's engine running (control-plane.sh up DIR --node
# starts it).
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=${1:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/prow-operator/Chart.yaml)}
image=prow-operator.local/prow-operator:$tag
cache="${PROW_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prow-operator}"
target_dir="$cache/static-target"
triple=x86_64-unknown-linux-gnu

echo "image: building static binaries (cached in $target_dir)" >&2
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$triple" \
  --target-dir "$target_dir" -p prow-operator -p prow-webhook \
  --bin prow-operator --bin prow-webhook >&2
context=$(mktemp -d "${TMPDIR:-/tmp}/prow-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
for binary in prow-operator prow-webhook; do
  cp "$target_dir/$triple/release/$binary" "$context/"
  # A static binary has no interpreter; one that has would not start on scratch.
  if ldd "$context/$binary" 2>&1 | grep -q "=>"; then
    echo "image: $binary is dynamically linked" >&2
    exit 1
  fi
done
cp Dockerfile "$context/"
docker build --quiet --target prebuilt --label "org.opencontainers.image.version=$tag" \
  -t "$image" "$context" >&2
echo "$image"
