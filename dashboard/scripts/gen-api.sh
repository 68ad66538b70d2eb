#!/usr/bin/env bash
# Regenerate src/api/schema.d.ts from the gateway's OpenAPI document (gateway/openapi.py), the one contract
# the dashboard compiles against. tests/browser/test_front_end_source.py fails when it is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(cd .. && pwd)/.venv/bin/python"
[[ -x "$PY" ]] || PY=python3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd .. && "$PY" -c 'import json; from gateway.openapi import DOCUMENT; print(json.dumps(DOCUMENT, indent=1))') \
  > "$tmp/openapi.json"
npx --no-install openapi-typescript "$tmp/openapi.json" -o src/api/schema.d.ts
