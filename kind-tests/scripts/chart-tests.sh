#!/usr/bin/env bash
# The chart's tests (charts/tests) with a real Helm engine: the PyPI package helm-python-sdk,
# in a virtualenv cached outside the work tree. Needs PROW_TEST_KUBECONFIG for the server-side
# dry run (skipped without it, an error under CI=true). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${PROW_OPERATOR_CACHE:-$HOME/.cache/prow-operator}
venv="$cache/chart-venv"
want="helm-python-sdk==0.2.2 pytest==8.3.5 PyYAML==6.0.2"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $want
  echo "$want" >"$venv/.installed"
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider charts/tests "$@"
