#!/usr/bin/env bash
# Cluster benchmark: signed webhooks/s and p50/p99 through the bundled Nginx to N replicas
# (scripts/cluster.sh, release build, audit and delivery on), then the same load straight to
# one replica, for comparison. The load generator's address is exempt from Nginx's rate limit
# (CLUSTER_UNLIMITED); everything else is the bundled config. Prints figures; asserts nothing.
#   scripts/bench-cluster.sh [REPLICAS] [REQUESTS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
replicas=${1:-3}
requests=${2:-100000}
connections=${3:-64}
port=${BENCH_PORT:-18380}
sink_port=$((port + replicas + 1))
. scripts/lib.sh
# shellcheck disable=SC2046
hg_setup cluster $(seq "$port" "$sink_port")
export CLUSTER_DIR="$workdir/cluster" CLUSTER_PORT=$port CLUSTER_UNLIMITED=127.0.0.1/32
trap 'scripts/cluster.sh stop >/dev/null 2>&1 || true; hg_cleanup' EXIT

cargo build --release --quiet
bin=target/release/hookgate
tools=target/release/hookgate-tools
export HOOKGATE_BIN=$PWD/$bin

{ hg_config_head "$port"; hg_chatwoot_source "http://127.0.0.1:$sink_port/hooks/chatwoot"; } > "$workdir/bench.toml"
export HOOKGATE_CONFIG=$workdir/bench.toml RUST_LOG=warn

"$tools" sink --bind "127.0.0.1:$sink_port" >/dev/null 2>&1 &
pids+=($!)
hg_wait_for "http://127.0.0.1:$sink_port/stats"
scripts/cluster.sh start "$replicas" >/dev/null

load() { # url requests
  "$tools" --config "$workdir/bench.toml" loadgen --source chatwoot --url "$1" \
    --requests "$2" --connections "$connections" 2>/dev/null | grep '^figures:'
}
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }

echo "== $requests signed chatwoot webhooks, $connections connections, $replicas replicas, $(nproc) cores"
load "http://127.0.0.1:$port" 5000 >/dev/null
nginx=$(load "http://127.0.0.1:$port" "$requests")
echo "through Nginx:      $nginx"
direct=$(load "http://127.0.0.1:$((port + 1))" "$requests")
echo "one replica direct: $direct"
total=$((2 * requests + 5000))
for _ in $(seq 1 600); do
  delivered=$(curl -sf "http://127.0.0.1:$sink_port/stats" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
  [ "${delivered:-0}" -ge "$total" ] && break
  sleep 0.5
done
echo "delivered to the sink: ${delivered:-0} of $total"
upstreams=$(sed -n 's/.*"upstream":"\([^"]*\)".*/\1/p' "$CLUSTER_DIR/nginx-access.log" | sort | uniq -c | tr '\n' ' ')
echo "requests per replica (Nginx access log): $upstreams"
echo
printf 'RESULT nginx_rps=%s nginx_p50_ms=%s nginx_p99_ms=%s direct_rps=%s direct_p99_ms=%s\n' \
  "$(field "$nginx" rps)" "$(field "$nginx" p50_ms)" "$(field "$nginx" p99_ms)" \
  "$(field "$direct" rps)" "$(field "$direct" p99_ms)"
