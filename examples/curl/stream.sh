#!/usr/bin/env bash
# A streamed chat completion: server-sent events, `data: {...}` per chunk, the usage chunk, then `data: [DONE]`.
set -euo pipefail
URL="${LOCKGATE_URL:-http://127.0.0.1:4000}"
curl -sS -N --fail-with-body "$URL/v1/chat/completions" \
  -H "Authorization: Bearer $LOCKGATE_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
       "messages": [{"role": "user", "content": "Count to three."}]}'
