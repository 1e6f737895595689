#!/usr/bin/env bash
# Ingest benchmark: signed webhooks/s and p50/p99 through the full ingest path (verify,
# atomic dedup + enqueue, audit on), then the same load against a minimal actix handler
# doing one Redis EVAL, and the ratio. Prints figures; asserts nothing.
#   scripts/bench-ingest.sh [REQUESTS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-200000}
connections=${2:-64}
port=${BENCH_PORT:-18080}
base_port=${BENCH_BASELINE_PORT:-18099}
. scripts/lib.sh
hg_setup bench "$port" "$base_port"
# The baseline server writes under its own prefix.
trap 'hg_cleanup; redis-cli -u "$redis_url" --scan --pattern "hookgate-baseline:*" | xargs -r -n 500 redis-cli -u "$redis_url" del >/dev/null || true' EXIT

cargo build --release --quiet
bin=target/release/hookgate
tools=target/release/hookgate-tools

{ hg_config_head "$port"; hg_chatwoot_source; } > "$workdir/bench.toml"

load() { # url requests
  "$tools" --config "$workdir/bench.toml" loadgen --source chatwoot --url "$1" \
    --requests "$2" --connections "$connections" 2>/dev/null | grep '^figures:'
}
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "== hookgate ingest: $requests signed chatwoot webhooks, $connections connections, $(nproc) cores"
RUST_LOG=warn "$bin" --config "$workdir/bench.toml" serve &
pids+=($!)
hg_wait_for "http://127.0.0.1:$port/ready"
load "http://127.0.0.1:$port" 5000 >/dev/null
full=$(load "http://127.0.0.1:$port" "$requests")
echo "full path:  $full"
# Audit rows land asynchronously; report how many were written.
sleep 2
rows=$(psql "$pg/$db" -Atc "select count(*) from webhook_events" 2>/dev/null || echo "?")
echo "audit rows written: $rows (of $((requests + 5000)) accepted)"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

echo "== baseline: minimal actix handler, one Redis EVAL (SET NX EX + XADD) per request"
REDIS_URL="$redis_url" RUST_LOG=warn "$tools" --config "$workdir/bench.toml" baseline-server --bind "127.0.0.1:$base_port" &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$base_port/" && break; sleep 0.1; done
load "http://127.0.0.1:$base_port" 5000 >/dev/null
baseline=$(load "http://127.0.0.1:$base_port" "$requests")
echo "baseline:   $baseline"

f_rps=$(field "$full" rps); b_rps=$(field "$baseline" rps)
echo
printf 'RESULT full_rps=%s full_p50_ms=%s full_p99_ms=%s baseline_rps=%s baseline_p99_ms=%s ratio=%.2f\n' \
  "$f_rps" "$(field "$full" p50_ms)" "$(field "$full" p99_ms)" "$b_rps" "$(field "$baseline" p99_ms)" \
  "$(echo "$f_rps / $b_rps" | bc -l)"
echo "targets on 2 cores: >= 15000 webhooks/s, p99 < 10 ms, ratio >= 0.75"
