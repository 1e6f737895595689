#!/usr/bin/env bash
# Writes a PNG of the dashboard with data in it: starts a gateway and a destination on local
# ports, sends webhooks (some to a destination that refuses them, so there are dead letters,
# retries and an open circuit), then photographs the page in headless Chromium.
#   scripts/dashboard-screenshot.sh [OUT.png]   (default: dashboard.png)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dashboard.png}")
port=${SHOT_PORT:-18180}
sink_port=${SHOT_SINK_PORT:-18198}
token=screenshot-token
. scripts/lib.sh
hg_setup shot "$port" "$sink_port"
scripts/dev-services.sh >/dev/null
cargo build --release --quiet
bin=target/release/hookgate
tools=target/release/hookgate-tools
{ hg_config_head "$port"; cat <<TOML
[admin]
token = "$token"
[[sources]]
name = "chatwoot"
kind = "chatwoot"
secrets = ["demo-chatwoot"]
[[sources.destinations]]
name = "inbox-app"
url = "http://127.0.0.1:$sink_port/chatwoot"
[[sources]]
name = "pluggy"
kind = "pluggy"
secrets = ["demo-pluggy"]
[sources.retry]
base_delay_ms = 500
[sources.circuit]
failure_threshold = 3
open_seconds = 300
[[sources.destinations]]
name = "finance"
url = "http://127.0.0.1:1/unreachable"
timeout_ms = 500
[[sources]]
name = "c2s"
kind = "c2s"
secrets = ["demo-c2s"]
[[sources.destinations]]
name = "crm"
url = "http://127.0.0.1:$sink_port/crm/status/410"
TOML
} > "$workdir/shot.toml"
RUST_LOG=warn "$tools" --config "$workdir/shot.toml" sink --bind "127.0.0.1:$sink_port" &
pids+=($!)
RUST_LOG=warn "$bin" --config "$workdir/shot.toml" serve &
pids+=($!)
hg_wait_for "http://127.0.0.1:$port/ready"
send() { "$bin" --config "$workdir/shot.toml" send --url "http://127.0.0.1:$port" "$@" >/dev/null; }
for i in $(seq 1 40); do send --source chatwoot --data "{\"event\":\"message_created\",\"id\":$i,\"account\":{\"id\":1}}"; done
for i in $(seq 1 6); do send --source pluggy --data "{\"event\":\"item/updated\",\"eventId\":\"evt-$i\",\"itemId\":\"item-$i\"}"; done
# C2S's "crm" answers 410: dead letters.
for i in $(seq 1 3); do send --source c2s --data "{\"id\":\"lead-$i\",\"hook_action\":\"on_create_lead\",\"attributes\":{\"updated_at\":\"2026-11-22T10:0$i:00Z\"}}"; done
sleep 3
(cd tests/browser && node screenshot.mjs "http://127.0.0.1:$port" "$token" "$out")
