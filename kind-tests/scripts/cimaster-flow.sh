#!/usr/bin/env bash
# What an existing e2e image does with cimaster, spoken only through the cimaster-compatible
# API (curl), checked through `kubectl get testclusters`:
#   getvacant -> finishtest, getvacant -> hold -> release, hold -> expiry (short duration),
#   addcluster -> disablecluster -> enablecluster -> deletecluster.
#
#   cimaster-flow.sh ADDRESS NAMESPACE [TOKEN]
#
# ADDRESS is the operator's --compat-listen (HOST:PORT), NAMESPACE its --compat-namespace;
# TOKEN, when given, is sent as a bearer token. kubectl reads the usual KUBECONFIG. Exits
# non-zero at the first answer or phase that is not the expected one.
set -euo pipefail
api=$1 ns=$2 token=${3:-}
auth=()
[ -n "$token" ] && auth=(-H "Authorization: Bearer $token")

fail() { echo "cimaster-flow: $*" >&2; exit 1; }
# call PATH?QUERY -> prints the answer; fails unless HTTP 200.
call() {
  local out code
  out=$(curl -s -w '\n%{http_code}' "${auth[@]}" "http://$api/$1")
  code=${out##*$'\n'}
  [ "$code" = 200 ] || fail "$1 answered $code: ${out%$'\n'*}"
  printf '%s' "${out%$'\n'*}"
}
# phase CLUSTER -> the PHASE column of kubectl get testclusters.
phase() { kubectl -n "$ns" get testclusters "$1" --no-headers -o custom-columns=PHASE:.status.phase; }
expect_phase() {
  local i
  for i in $(seq 1 100); do
    [ "$(phase "$1")" = "$2" ] && { echo "  $1: $2"; return 0; }
    sleep 0.1
  done
  fail "$1 is $(phase "$1"), not $2"
}

echo "add -> disable -> enable"
call "addcluster?cluster=flow-1&region=local&name=flow" >/dev/null
call "disablecluster?cluster=flow-1" >/dev/null
expect_phase flow-1 Disabled
call "enablecluster?cluster=flow-1" >/dev/null
expect_phase flow-1 Vacant

echo "getvacant -> finishtest"
cluster=""
for i in $(seq 1 50); do
  cluster=$(curl -sf "${auth[@]}" "http://$api/getvacant?build=1&job=flow" || true)
  [ -n "$cluster" ] && break
  sleep 0.2
done
[ "$cluster" = flow-1 ] || fail "getvacant gave '$cluster'"
expect_phase flow-1 Leased
call "finishtest?cluster=flow-1" >/dev/null
expect_phase flow-1 Vacant

echo "getvacant -> holdcluster -> releasecluster"
[ "$(call "getvacant?build=2&job=flow")" = flow-1 ] || fail "getvacant"
call "holdcluster?cluster=flow-1&name=flow-user" >/dev/null
expect_phase flow-1 Held
kubectl -n "$ns" get testclusters flow-1 --no-headers | grep -q flow-user || fail "the holder is not shown"
call "releasecluster?cluster=flow-1" >/dev/null
expect_phase flow-1 Vacant

echo "getvacant -> holdcluster for 2s -> expiry"
[ "$(call "getvacant?build=3&job=flow")" = flow-1 ] || fail "getvacant"
call "holdcluster?cluster=flow-1&name=flow-user&duration=2s" >/dev/null
expect_phase flow-1 Held
sleep 2
expect_phase flow-1 Vacant

echo "nothing vacant: 503, which curl --retry retries"
[ "$(call "getvacant?build=4&job=flow")" = flow-1 ] || fail "getvacant"
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "http://$api/getvacant?build=5&job=flow")
[ "$code" = 503 ] || fail "getvacant with nothing vacant answered $code"
call "finishtest?cluster=flow-1" >/dev/null

echo "deletecluster"
call "deletecluster?cluster=flow-1" >/dev/null
for i in $(seq 1 100); do
  kubectl -n "$ns" get testclusters flow-1 >/dev/null 2>&1 || { echo "  flow-1: deleted"; echo "cimaster-flow: ok"; exit 0; }
  sleep 0.1
done
fail "flow-1 was not deleted"
