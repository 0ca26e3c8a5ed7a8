#!/usr/bin/env bash
# Create a virtual key with a monthly budget and a model allowlist (needs the master key or an admin JWT),
# then show that the new key may use gpt-4o-mini and not gpt-4o. The secret is printed once, by the gateway.
set -euo pipefail
URL="${LOCKGATE_URL:-http://127.0.0.1:4000}"
created=$(curl -sS --fail-with-body "$URL/admin/keys" \
  -H "Authorization: Bearer $LOCKGATE_KEY" \
  -H "Content-Type: application/json" \
  -d '{"name": "search-team", "team": "search", "models": ["gpt-4o-mini"], "max_budget_usd": 50, "budget_period": "monthly"}')
echo "$created"
key=$(echo "$created" | sed -E 's/.*"key":"([^"]+)".*/\1/')
status() {
  curl -sS -o /dev/null -w '%{http_code}' "$URL/v1/chat/completions" -H "Authorization: Bearer $key" \
    -H "Content-Type: application/json" -d "{\"model\": \"$1\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}"
}
echo "gpt-4o-mini: $(status gpt-4o-mini)"
echo "gpt-4o: $(status gpt-4o)"
