#!/usr/bin/env bash
# Embeddings for two texts.
set -euo pipefail
URL="${LOCKGATE_URL:-http://127.0.0.1:4000}"
curl -sS --fail-with-body "$URL/v1/embeddings" \
  -H "Authorization: Bearer $LOCKGATE_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "text-embedding-3-small", "input": ["The food was delicious.", "The waiter was friendly."]}'
echo
