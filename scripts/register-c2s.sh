#!/usr/bin/env bash
# Subscribes the gateway's C2S URL to lead events with C2S's API:
#   C2S_API_URL=https://... C2S_API_TOKEN=... scripts/register-c2s.sh https://hooks.example.com/webhooks/c2s[/TOKEN]
# Sends POST $C2S_API_URL/integration/leads/subscribe {"hook_url", "hook_action"} once per
# action of C2S_ACTIONS (default: on_create_lead on_update_lead on_close_lead).
# C2S_AUTH_HEADER overrides the auth header (default "Authorization: Bearer $C2S_API_TOKEN").
# DRY_RUN=1 prints the requests instead of sending them.
set -euo pipefail
url=${1:?usage: $0 HOOK_URL (the gateway URL C2S should call)}
api=${C2S_API_URL:?set C2S_API_URL to C2S API base URL}
auth=${C2S_AUTH_HEADER:-"Authorization: Bearer ${C2S_API_TOKEN:?set C2S_API_TOKEN (or C2S_AUTH_HEADER)}"}
actions=${C2S_ACTIONS:-on_create_lead on_update_lead on_close_lead}
for action in $actions; do
  body=$(python3 -c 'import json,sys; print(json.dumps({"hook_url": sys.argv[1], "hook_action": sys.argv[2]}))' "$url" "$action")
  if [ -n "${DRY_RUN:-}" ]; then
    echo "POST $api/integration/leads/subscribe $body"
    continue
  fi
  answer=$(curl -sS -w '\n%{http_code}' -X POST "$api/integration/leads/subscribe" \
    -H "$auth" -H 'Content-Type: application/json' --data "$body")
  code=${answer##*$'\n'}
  echo "$action: $code ${answer%$'\n'*}"
  case "$code" in 2*) ;; *) echo "C2S refused the subscription of $action" >&2; exit 1 ;; esac
done
