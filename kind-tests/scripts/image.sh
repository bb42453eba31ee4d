#!/usr/bin/env bash
# Builds the images the chart runs by default, with no registry, from binaries statically
# linked on the host (glibc, `+crt-static`); the Cargo build is cached outside the work tree.
#
#   prow-operator.local/prow-operator:TAG   the operator, the webhook, prow-hook and prow-dashboard: the Dockerfile's
#                                           `prebuilt` stage (FROM scratch) around them
#   prow-operator.local/prow-utils:VERSION  the pod utilities of decorated jobs (VERSION is the
#                                           workspace's): `prow-utils` (profile `utils`: small)
#                                           and git with the libraries it loads, from this
#                                           machine's Debian packages; the `utils` stage
#
#   kind-tests/scripts/image.sh [TAG]     # default: the chart's appVersion
#
# Prints the operator image's name. Needs Docker's engine running (control-plane.sh up DIR
# --node starts it).
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=${1:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/prow-operator/Chart.yaml)}
image=prow-operator.local/prow-operator:$tag
cache="${PROW_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prow-operator}"
target_dir="$cache/static-target"
triple=x86_64-unknown-linux-gnu

echo "image: building static binaries (cached in $target_dir)" >&2
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$triple" \
  --target-dir "$target_dir" -p prow-operator -p prow-webhook -p prow-hook -p prow-dashboard \
  --bin prow-operator --bin prow-webhook --bin prow-hook --bin prow-dashboard >&2
context=$(mktemp -d "${TMPDIR:-/tmp}/prow-image.XXXXXX")
trap 'rm -rf "$context"' EXIT
for binary in prow-operator prow-webhook prow-hook prow-dashboard; do
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

# The utility image: prow-utils, git (with git-remote-http for http(s) clones) and ssh (for
# ssh clones), each with the libraries ldd lists, at their own paths; CA certificates.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
utils_image=prow-operator.local/prow-utils:$version
echo "image: building prow-utils (profile utils)" >&2
RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile utils --locked --target "$triple" \
  --target-dir "$target_dir" -p prow-utils --bin prow-utils >&2
if [ ! -x /usr/bin/git ] || [ ! -x /usr/lib/git-core/git-remote-http ]; then
  echo "image: installing Debian's git" >&2
  if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
  $sudo apt-get install -y -qq git ca-certificates >/dev/null
fi
root="$context/utils-root"
mkdir -p "$root/tmp" "$root/etc/ssl/certs" "$root/usr/lib/git-core" "$root/usr/bin"
chmod 1777 "$root/tmp"
cp "$target_dir/$triple/utils/prow-utils" "$root/prow-utils"
if ldd "$root/prow-utils" 2>&1 | grep -q "=>"; then
  echo "image: prow-utils is dynamically linked" >&2
  exit 1
fi
programs=(/usr/bin/git /usr/lib/git-core/git-remote-http)
[ -x /usr/bin/ssh ] && programs+=(/usr/bin/ssh)
for program in "${programs[@]}"; do
  cp "$program" "$root$program"
  for lib in $(ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
ln -sf git-remote-http "$root/usr/lib/git-core/git-remote-https"
ln -sf ../../bin/git "$root/usr/lib/git-core/git"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
# ssh refuses a user it cannot look up.
printf 'root:x:0:0:root:/tmp:/prow-utils\nnonroot:x:65532:65532:nonroot:/tmp:/prow-utils\n' >"$root/etc/passwd"
docker build --quiet --target utils --label "org.opencontainers.image.version=$version" \
  -t "$utils_image" "$context" >&2
echo "image: $utils_image, $(docker image inspect -f '{{.Size}}' "$utils_image" | awk '{printf "%.1f MB", $1 / 1e6}')" >&2
echo "$image"
