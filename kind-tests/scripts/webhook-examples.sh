#!/usr/bin/env bash
# GitHub's real webhook payloads, for prow-hook's tests: the npm package
# @octokit/webhooks-examples (MIT), fetched once with `npm pack` and cached outside the work tree.
# Prints the path of its api.github.com/index.json (tests read it through
# PROW_TEST_WEBHOOK_EXAMPLES).
set -euo pipefail
version=7.6.1
cache=${PROW_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prow-operator}
dir="$cache/webhooks-examples-$version"
index="$dir/package/api.github.com/index.json"
if [ ! -s "$index" ]; then
  command -v npm >/dev/null || { echo "webhook-examples: npm is missing" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@octokit/webhooks-examples@$version" >/dev/null)
  mkdir -p "$dir"
  tar -xzf "$tmp"/octokit-webhooks-examples-*.tgz -C "$dir" package/api.github.com/index.json package/LICENSE 2>/dev/null ||
    tar -xzf "$tmp"/octokit-webhooks-examples-*.tgz -C "$dir" package/api.github.com/index.json
fi
echo "$index"
