#!/usr/bin/env bash
# Registers the gateway's Pluggy URL as a webhook, with the secret header Pluggy will send
# back (the `pluggy` kind checks it in constant time):
#   PLUGGY_CLIENT_ID=... PLUGGY_CLIENT_SECRET=... PLUGGY_WEBHOOK_SECRET=... \
#     scripts/register-pluggy.sh https://hooks.example.com/webhooks/pluggy
# PLUGGY_API_URL (default https://api.pluggy.ai), PLUGGY_EVENT (default all),
# PLUGGY_SECRET_HEADER (default X-Webhook-Secret: keep it equal to the source's
# signature_header). DRY_RUN=1 prints the requests instead of sending them.
set -euo pipefail
url=${1:?usage: $0 HOOK_URL (the gateway URL Pluggy should call)}
api=${PLUGGY_API_URL:-https://api.pluggy.ai}
client_id=${PLUGGY_CLIENT_ID:?set PLUGGY_CLIENT_ID}
client_secret=${PLUGGY_CLIENT_SECRET:?set PLUGGY_CLIENT_SECRET}
secret=${PLUGGY_WEBHOOK_SECRET:?set PLUGGY_WEBHOOK_SECRET (the source secret)}
event=${PLUGGY_EVENT:-all}
header=${PLUGGY_SECRET_HEADER:-X-Webhook-Secret}
json() { python3 -c 'import json,sys; a=sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@"; }

auth_body=$(json clientId "$client_id" clientSecret "$client_secret")
hook_body=$(python3 -c 'import json,sys; print(json.dumps({"event": sys.argv[1], "url": sys.argv[2], "headers": {sys.argv[3]: sys.argv[4]}}))' \
  "$event" "$url" "$header" "$secret")
if [ -n "${DRY_RUN:-}" ]; then
  echo "POST $api/auth {\"clientId\": \"$client_id\", \"clientSecret\": \"***\"}"
  echo "POST $api/webhooks (X-API-KEY from /auth) {\"event\": \"$event\", \"url\": \"$url\", \"headers\": {\"$header\": \"***\"}}"
  exit 0
fi
api_key=$(curl -sS --fail-with-body -X POST "$api/auth" -H 'Content-Type: application/json' --data "$auth_body" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["apiKey"])')
answer=$(curl -sS -w '\n%{http_code}' -X POST "$api/webhooks" -H "X-API-KEY: $api_key" \
  -H 'Content-Type: application/json' --data "$hook_body")
code=${answer##*$'\n'}
echo "webhook: $code ${answer%$'\n'*}"
case "$code" in 2*) ;; *) echo "Pluggy refused the webhook" >&2; exit 1 ;; esac
