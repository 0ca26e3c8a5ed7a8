#!/usr/bin/env bash
# A virtual key for one developer's Claude Code: a monthly budget and the two models claude-code.env maps.
# Needs the master key (or an admin JWT) in LOCKGATE_KEY; prints the line to put in claude-code.env.
set -euo pipefail
URL="${LOCKGATE_URL:-http://127.0.0.1:4000}"
created=$(curl -sS --fail-with-body "$URL/admin/keys" \
  -H "Authorization: Bearer $LOCKGATE_KEY" \
  -H "Content-Type: application/json" \
  -d '{"name": "alice-claude-code", "models": ["claude-sonnet", "gpt-4o-mini"], "max_budget_usd": 50, "budget_period": "monthly"}')
echo "ANTHROPIC_AUTH_TOKEN=$(echo "$created" | sed -E 's/.*"key":"([^"]+)".*/\1/')"
