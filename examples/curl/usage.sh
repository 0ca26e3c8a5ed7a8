#!/usr/bin/env bash
# Usage and spend: the caller's own by model (/v1/usage, any key), and everyone's by key (/admin/usage, admins).
set -euo pipefail
URL="${LOCKGATE_URL:-http://127.0.0.1:4000}"
curl -sS --fail-with-body "$URL/v1/usage?group_by=model" -H "Authorization: Bearer $LOCKGATE_KEY"
echo
curl -sS --fail-with-body "$URL/admin/usage?group_by=key" -H "Authorization: Bearer $LOCKGATE_KEY"
echo
