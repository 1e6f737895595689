#!/usr/bin/env bash
# Delivery benchmark, end to end with the audit trail on:
#  1. ingest-to-delivery latency (p50/p99) at a fixed 1,000 events/s, without and with
#     `ordering_key`;
#  2. sustained events/s: N signed webhooks as fast as they are accepted, timed until the
#     local sink (answering 200) has received every one; run twice, one after the other on
#     the same gateway: to a destination without `ordering_key`, then to one with
#     `ordering_key = "/key"`, the bodies carrying BENCH_KEYS distinct keys (alike
#     in both runs); both figures and their ratio are printed.
#  3. how long after the last delivery of a run the audit trail has every event as delivered
#     (the longest over the runs of each kind).
# Prints figures; asserts nothing.   scripts/bench-delivery.sh [EVENTS] [RATE] [SECONDS]
# HOOKGATE_BIN, HOOKGATE_TOOLS: binaries to measure instead of this tree's release build (to
# compare with an older build in the same run). BENCH_KEYS (default 1000): distinct ordering
# keys. BENCH_ROUNDS (default 1): rounds of the two runs, every other round in the opposite
# order; the figures are over all rounds. BENCH_ORDERING=0 skips the run with `ordering_key`
# (builds that know neither it nor HOOKGATE_LOADGEN_KEYS).
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-100000}
rate=${2:-1000}
seconds=${3:-10}
port=${BENCH_PORT:-18080}
sink_port=${BENCH_SINK_PORT:-18098}
keys=${BENCH_KEYS:-1000}
ordering=${BENCH_ORDERING:-1}
rounds=${BENCH_ROUNDS:-1}
. scripts/lib.sh
hg_setup bench "$port" "$sink_port"
if [ -z "${HOOKGATE_BIN:-}" ] || [ -z "${HOOKGATE_TOOLS:-}" ]; then
  cargo build --release --quiet
fi
bin=${HOOKGATE_BIN:-target/release/hookgate}
tools=${HOOKGATE_TOOLS:-target/release/hookgate-tools}

# Two sources of the same kind and secret: `chatwoot` delivers unordered, `chatwoot-ordered`
# with `ordering_key`, so that both runs go through one gateway process. The idle one only
# polls while the other runs.
{
  hg_config_head "$port"
  hg_chatwoot_source "http://127.0.0.1:$sink_port/hooks"
  if [ "$ordering" != 0 ]; then
    echo
    hg_chatwoot_source "http://127.0.0.1:$sink_port/hooks" | sed 's/^name = "chatwoot"$/name = "chatwoot-ordered"/'
    echo 'ordering_key = "/key"'
  fi
} > "$workdir/bench.toml"
# Every body carries a "key" of $keys distinct values, in both runs alike.
export HOOKGATE_LOADGEN_KEYS=$keys

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
warm=5000
"$tools" --config "$workdir/bench.toml" loadgen --source chatwoot --url "http://127.0.0.1:$port" --requests 5000 --connections 32 >/dev/null 2>&1
if [ "$ordering" != 0 ]; then
  "$tools" --config "$workdir/bench.toml" loadgen --source chatwoot-ordered --url "http://127.0.0.1:$port" --requests 1000 --connections 32 >/dev/null 2>&1
  warm=6000
fi
wait_delivered "$warm" 60

latency() { # source, label: sets sent, p50 and p99 (µs)
  echo "== latency at a fixed $rate events/s for $seconds s, $2"
  curl -s -XPOST "http://127.0.0.1:$sink_port/reset" >/dev/null
  local lat
  lat=$("$tools" --config "$workdir/bench.toml" loadgen --source "$1" --url "http://127.0.0.1:$port" \
    --rate "$rate" --seconds "$seconds" --connections 16 2>/dev/null | grep '^figures:')
  sent=$(sed -n 's/.*ok=\([0-9]*\).*/\1/p' <<<"$lat")
  wait_delivered "$sent" 60
  p50=$(sink_stat p50_us); p99=$(sink_stat p99_us)
  printf 'ingest-to-delivery at %s/s: %s events, p50 %.2f ms, p99 %.2f ms\n' "$rate" "$sent" \
    "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)"
}
latency chatwoot "without ordering_key"
total=$((warm + sent))
if [ "$ordering" != 0 ]; then
  plain_p50=$p50; plain_p99=$p99
  latency chatwoot-ordered "with ordering_key = \"/key\" ($keys keys)"
  total=$((total + sent))
  ordered_p50=$p50; ordered_p99=$p99; p50=$plain_p50; p99=$plain_p99
fi
# Events accepted so far (warm-up, latency runs, sustained runs) must each reach the trail.
audit_rows() { psql "$pg/$db" -Atc "select count(*) from webhook_events where status = 'delivered'" 2>/dev/null || echo 0; }

sustained() { # source, label: sets took (s until all delivered) and lag (s until the trail had them all)
  echo "== sustained, $2: $events events as fast as they are accepted"
  curl -s -XPOST "http://127.0.0.1:$sink_port/reset" >/dev/null
  local start ingest ingest_done end audited deadline
  start=$(date +%s.%N)
  ingest=$("$tools" --config "$workdir/bench.toml" loadgen --source "$1" --url "http://127.0.0.1:$port" \
    --requests "$events" --connections 64 2>/dev/null | grep '^figures:')
  ingest_done=$(date +%s.%N)
  wait_delivered "$events" 600
  end=$(date +%s.%N)
  took=$(echo "$end - $start" | bc -l)
  printf 'ingest: %s\n' "$ingest"
  printf 'delivered all %s in %.1f s (ingest finished at %.1f s): %.0f events/s\n' "$events" \
    "$took" "$(echo "$ingest_done - $start" | bc -l)" "$(echo "$events / $took" | bc -l)"
  # Waited for before the next run, so that one run's audit backlog never slows the other.
  total=$((total + events))
  deadline=$((SECONDS + 300))
  while [ "$(audit_rows)" -lt "$total" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  audited=$(date +%s.%N)
  lag=$(echo "$audited - $end" | bc -l)
  printf 'audit: %s of %s events delivered in the trail, %.1f s after the last delivery\n' \
    "$(audit_rows)" "$total" "$lag"
}
max() { echo "if ($1 > $2) $1 else $2" | bc -l; }

# Each round runs both; even rounds the other way round, so that what comes first or second
# (a warmer cache, a bigger database) does not pass for the cost of ordering.
took_plain=0; took_ordered=0; lag_plain=0; lag_ordered=0
plain() {
  sustained chatwoot "without ordering_key"
  took_plain=$(echo "$took_plain + $took" | bc -l); lag_plain=$(max "$lag_plain" "$lag")
}
ordered() {
  [ "$ordering" != 0 ] || return 0
  sustained chatwoot-ordered "with ordering_key = \"/key\" ($keys keys)"
  took_ordered=$(echo "$took_ordered + $took" | bc -l); lag_ordered=$(max "$lag_ordered" "$lag")
}
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then plain; ordered; else ordered; plain; fi
done
e2e_plain=$(echo "$rounds * $events / $took_plain" | bc -l)

echo
printf 'sustained without ordering_key: %.0f events/s\n' "$e2e_plain"
if [ "$ordering" != 0 ]; then
  e2e_ordered=$(echo "$rounds * $events / $took_ordered" | bc -l)
  ratio=$(echo "$e2e_ordered / $e2e_plain" | bc -l)
  printf 'sustained with ordering_key (%s keys): %.0f events/s, %.2f of it\n' "$keys" "$e2e_ordered" "$ratio"
fi
printf 'RESULT e2e_events_per_s=%.0f latency_p50_ms=%.2f latency_p99_ms=%.2f at_rate=%s audit_lag_s=%.1f' "$e2e_plain" \
  "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)" "$rate" "$lag_plain"
if [ "$ordering" != 0 ]; then
  printf ' ordered_e2e_events_per_s=%.0f ordered_ratio=%.2f ordered_keys=%s ordered_audit_lag_s=%.1f ordered_latency_p50_ms=%.2f ordered_latency_p99_ms=%.2f' \
    "$e2e_ordered" "$ratio" "$keys" "$lag_ordered" "$(echo "$ordered_p50/1000" | bc -l)" "$(echo "$ordered_p99/1000" | bc -l)"
fi
echo
echo "targets on 2 cores: >= 8000 events/s sustained; p50 < 5 ms at 1000 events/s"
