#!/usr/bin/env bash
# Delivery benchmark, end to end with the audit trail on:
#  1. ingest-to-delivery latency (p50/p99) at a fixed 1,000 events/s;
#  2. sustained events/s: N signed webhooks as fast as they are accepted, timed until the
#     local sink (answering 200) has received every one.
#  3. how long after the last delivery the audit trail has every event as delivered.
# Prints figures; asserts nothing.   scripts/bench-delivery.sh [EVENTS] [RATE] [SECONDS]
# HOOKGATE_BIN, HOOKGATE_TOOLS: binaries to measure instead of this tree's release build (to
# compare with an older build in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
rate=${2:-1000}
seconds=${3:-10}
port=${BENCH_PORT:-18080}
sink_port=${BENCH_SINK_PORT:-18098}
. scripts/lib.sh
hg_setup bench "$port" "$sink_port"
if [ -z "${HOOKGATE_BIN:-}" ] || [ -z "${HOOKGATE_TOOLS:-}" ]; then
  cargo build --release --quiet
fi
bin=${HOOKGATE_BIN:-target/release/hookgate}
tools=${HOOKGATE_TOOLS:-target/release/hookgate-tools}

{ hg_config_head "$port"; hg_chatwoot_source "http://127.0.0.1:$sink_port/hooks"; } > "$workdir/bench.toml"

sink_stat() { curl -s "http://127.0.0.1:$sink_port/stats" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
wait_delivered() { # count deadline_seconds
  local deadline=$((SECONDS + $2))
  while [ "$(sink_stat count)" -lt "$1" ]; do
    if [ $SECONDS -ge $deadline ]; then echo "only $(sink_stat count) of $1 delivered in $2 s" >&2; return 1; fi
    sleep 0.2
  done
}

RUST_LOG=warn "$tools" --config "$workdir/bench.toml" sink --bind "127.0.0.1:$sink_port" &
pids+=($!)
RUST_LOG=warn "$bin" --config "$workdir/bench.toml" serve &
pids+=($!)
hg_wait_for "http://127.0.0.1:$sink_port/stats"
hg_wait_for "http://127.0.0.1:$port/ready"

echo "== warm-up"
"$tools" --config "$workdir/bench.toml" loadgen --source chatwoot --url "http://127.0.0.1:$port" --requests 5000 --connections 32 >/dev/null 2>&1
wait_delivered 5000 60

echo "== latency at a fixed $rate events/s for $seconds s"
curl -s -XPOST "http://127.0.0.1:$sink_port/reset" >/dev/null
lat=$("$tools" --config "$workdir/bench.toml" loadgen --source chatwoot --url "http://127.0.0.1:$port" \
  --rate "$rate" --seconds "$seconds" --connections 16 2>/dev/null | grep '^figures:')
sent=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$lat")
wait_delivered "$sent" 60
p50=$(sink_stat p50_us); p99=$(sink_stat p99_us)
printf 'ingest-to-delivery at %s/s: %s events, p50 %.2f ms, p99 %.2f ms\n' "$rate" "$sent" \
  "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)"

echo "== sustained: $events events as fast as they are accepted"
curl -s -XPOST "http://127.0.0.1:$sink_port/reset" >/dev/null
start=$(date +%s.%N)
ingest=$("$tools" --config "$workdir/bench.toml" loadgen --source chatwoot --url "http://127.0.0.1:$port" \
  --requests "$events" --connections 64 2>/dev/null | grep '^figures:')
ingest_done=$(date +%s.%N)
wait_delivered "$events" 600
end=$(date +%s.%N)
e2e=$(echo "$events / ($end - $start)" | bc -l)
printf 'ingest: %s\n' "$ingest"
printf 'delivered all %s in %.1f s (ingest finished at %.1f s)\n' "$events" \
  "$(echo "$end - $start" | bc -l)" "$(echo "$ingest_done - $start" | bc -l)"
# Every event accepted so far (warm-up, latency run, sustained run) must reach the trail.
total=$((5000 + sent + events))
audit_rows() { psql "$pg/$db" -Atc "select count(*) from webhook_events where status = 'delivered'" 2>/dev/null || echo 0; }
deadline=$((SECONDS + 300))
while [ "$(audit_rows)" -lt "$total" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
audited=$(date +%s.%N)
lag=$(echo "$audited - $end" | bc -l)
printf 'audit: %s of %s events delivered in the trail, %.1f s after the last delivery\n' "$(audit_rows)" "$total" "$lag"
echo
printf 'RESULT e2e_events_per_s=%.0f latency_p50_ms=%.2f latency_p99_ms=%.2f at_rate=%s audit_lag_s=%.1f\n' "$e2e" \
  "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)" "$rate" "$lag"
echo "targets on 2 cores: >= 8000 events/s sustained; p50 < 5 ms at 1000 events/s"
