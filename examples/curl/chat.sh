#!/usr/bin/env bash
# A chat completion through Lockgate. LOCKGATE_URL and LOCKGATE_KEY say where and who (a master or lg- key).
set -euo pipefail
URL="${LOCKGATE_URL:-http://127.0.0.1:4000}"
curl -sS --fail-with-body "$URL/v1/chat/completions" \
  -H "Authorization: Bearer $LOCKGATE_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name one prime number."}]}'
echo
