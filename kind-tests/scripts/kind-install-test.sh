#!/usr/bin/env bash
# The chart's install tests (charts/tests/test_install.py) against a kind cluster, where `kind`
# and Docker are present; skips with one line where they are not. Creates the cluster
# (KIND_CLUSTER, default prow-operator-test) unless it exists, loads the project's image and
# the toolbox image the example jobs run in, runs the tests, and deletes a cluster it created.
#
#   kind-tests/scripts/kind-install-test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v kind >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "== kind install tests skipped: kind or a running Docker engine is missing"
  exit 0
fi
cluster=${KIND_CLUSTER:-prow-operator-test}
state=$(mktemp -d "${TMPDIR:-/tmp}/prow-kind.XXXXXX")
created=
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
  created=1
fi
trap '[ -z "$created" ] || kind delete cluster --name "$cluster"; rm -rf "$state"' EXIT
kind get kubeconfig --name "$cluster" >"$state/kubeconfig"
kind-tests/scripts/image.sh >/dev/null
kind load docker-image prow-operator.local/toolbox:v1 --name "$cluster"
KIND_KUBECONFIG="$state/kubeconfig" KIND_CLUSTER="$cluster" \
  kind-tests/scripts/chart-tests.sh charts/tests/test_install.py
