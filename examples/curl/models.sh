#!/usr/bin/env bash
# The models this key may use.
set -euo pipefail
URL="${LOCKGATE_URL:-http://127.0.0.1:4000}"
curl -sS --fail-with-body "$URL/v1/models" -H "Authorization: Bearer $LOCKGATE_KEY"
echo
