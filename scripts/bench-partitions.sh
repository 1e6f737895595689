#!/usr/bin/env bash
# Partition benchmark: ingest of one source with partitions = 1 and partitions = 3, on one
# private redis-server and on a local Redis Cluster of three masters with a replica each
# (scripts/redis-cluster.sh), in one run on the same machine. Every Redis here has
# appendonly yes + appendfsync always (the cluster script's setting, matched on the single
# server). Prints signed webhooks/s, p50/p99, hookgate's CPU and the Redis processes' CPU per
# run, and the ratios. Asserts nothing.
#   scripts/bench-partitions.sh [REQUESTS] [CONNECTIONS]
# On a machine of two cores every process (loadgen, hookgate, six cluster nodes) shares
# them: the figures say what partitions cost or bring there, not what they bring on
# separate machines, where each master has cores of its own.
# BENCH_PORT: hookgate's port; BENCH_REDIS_PORT: the private server's first port tried;
# BENCH_CLUSTER_PORT: the cluster's base port (and +10000 for its bus).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-60000}
connections=${2:-64}
port=${BENCH_PORT:-18180}
redis_port=${BENCH_REDIS_PORT:-16490}
cluster_port=${BENCH_CLUSTER_PORT:-17400}
. scripts/lib.sh
hg_setup bench-partitions "$port"
single_pid=
cleanup() {
  if [ -n "$single_pid" ]; then kill "$single_pid" 2>/dev/null || true; fi
  HOOKGATE_CLUSTER_DIR="$workdir/cluster" scripts/redis-cluster.sh stop >/dev/null 2>&1 || true
  hg_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cargo build --release --quiet --bins
bin=${CARGO_TARGET_DIR:-target}/release/hookgate
tools=${CARGO_TARGET_DIR:-target}/release/hookgate-tools

ticks_of() { local t=0 p; for p in "$@"; do t=$((t + $(ticks "$p"))); done; echo "$t"; }

config() { # partitions run: a gateway with one source of that many partitions
  cat <<TOML
[server]
bind = "127.0.0.1:$port"
summary_interval_seconds = 3600
[redis]
key_prefix = "$prefix-$2"
[database]
url = "$pg/$db"
[[sources]]
name = "chatwoot"
kind = "chatwoot"
secrets = ["bench-secret"]
partitions = $1
TOML
}

# The private single server: same persistence as the cluster's nodes.
p=$redis_port
while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
mkdir -p "$workdir/single"
redis-server --port "$p" --bind 127.0.0.1 --dir "$workdir/single" --save "" \
  --appendonly yes --appendfsync always --maxmemory-policy noeviction \
  --logfile "$workdir/single/log" &
single_pid=$!
single_url="redis://127.0.0.1:$p"
for _ in $(seq 1 100); do redis-cli -u "$single_url" ping >/dev/null 2>&1 && break; sleep 0.1; done

nodes=$(HOOKGATE_CLUSTER_DIR="$workdir/cluster" HOOKGATE_CLUSTER_PORT=$cluster_port \
  scripts/redis-cluster.sh start | sed -n 's/^REDIS_CLUSTER_NODES=//p')
cluster_pids=()
for f in "$workdir"/cluster/*/redis.pid; do cluster_pids+=("$(cat "$f")"); done

declare -A res
# One run: hookgate on topology $1 ("single" or "cluster") with $2 partitions.
run() { # topology partitions
  local name="$1-n$2" figures pid t0 r0 s0 ms
  config "$2" "$name" > "$workdir/$name.toml"
  local env=(RUST_LOG=warn HOOKGATE_SPOOL_DIR="$workdir/spool-$name")
  local redis_pids=("$single_pid")
  if [ "$1" = cluster ]; then
    env+=(REDIS_CLUSTER_NODES="$nodes")
    redis_pids=("${cluster_pids[@]}")
  else
    env+=(REDIS_URL="$single_url")
  fi
  env -u REDIS_URL "${env[@]}" "$bin" --config "$workdir/$name.toml" serve \
    2>>"$workdir/serve-$name.log" &
  pid=$!
  pids+=("$pid")
  hg_wait_for "http://127.0.0.1:$port/ready"
  "$tools" --config "$workdir/$name.toml" loadgen --source chatwoot \
    --url "http://127.0.0.1:$port" --requests 5000 --connections "$connections" >/dev/null 2>&1
  t0=$(ticks "$pid"); r0=$(ticks_of "${redis_pids[@]}"); s0=$(date +%s%N)
  figures=$("$tools" --config "$workdir/$name.toml" loadgen --source chatwoot \
    --url "http://127.0.0.1:$port" --requests "$requests" --connections "$connections" \
    2>/dev/null | grep '^figures:')
  ms=$(( ($(date +%s%N) - s0) / 1000000 ))
  res[$name.cpu]=$(cpu_pct $(( $(ticks "$pid") - t0 )) "$ms")
  res[$name.rcpu]=$(cpu_pct $(( $(ticks_of "${redis_pids[@]}") - r0 )) "$ms")
  local f
  for f in rps p50_ms p99_ms non_2xx errors; do res[$name.$f]=$(field "$figures" "$f"); done
  echo "  $name: $figures hookgate cpu%=${res[$name.cpu]} redis cpu%=${res[$name.rcpu]}"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pids=()
}

echo "== partitions: $requests signed chatwoot webhooks per run (after 5000 warm-up), $connections connections, $(nproc) cores"
echo "== single: $single_url; cluster: 3 masters + 3 replicas from $cluster_port; all appendfsync always"
for topology in single cluster; do
  for n in 1 3; do run "$topology" "$n"; done
done

ratio() { printf '%.2f' "$(echo "${res[$1.rps]} / ${res[$2.rps]}" | bc -l)"; }
echo
echo "== summary: $requests requests per run, $connections connections, $(nproc) cores, $(date -u +%FT%TZ)"
printf '%-12s %8s %7s %7s %7s %7s %9s\n' run rps p50_ms p99_ms non2xx cpu% redis_cpu%
for name in single-n1 single-n3 cluster-n1 cluster-n3; do
  printf '%-12s %8s %7s %7s %7s %7s %9s\n' "$name" "${res[$name.rps]}" "${res[$name.p50_ms]}" \
    "${res[$name.p99_ms]}" "${res[$name.non_2xx]}" "${res[$name.cpu]}" "${res[$name.rcpu]}"
done
echo "(cpu%: 100 = one core; redis_cpu%: all Redis processes of the topology together)"
echo "ratios:"
echo "  single: N=3 / N=1    $(ratio single-n3 single-n1)"
echo "  cluster: N=3 / N=1   $(ratio cluster-n3 cluster-n1)"
echo "  cluster / single, N=1  $(ratio cluster-n1 single-n1)"
echo "  cluster / single, N=3  $(ratio cluster-n3 single-n3)"
printf 'RESULT single_n1_rps=%s single_n3_rps=%s cluster_n1_rps=%s cluster_n3_rps=%s single_n1_p99_ms=%s single_n3_p99_ms=%s cluster_n1_p99_ms=%s cluster_n3_p99_ms=%s\n' \
  "${res[single-n1.rps]}" "${res[single-n3.rps]}" "${res[cluster-n1.rps]}" "${res[cluster-n3.rps]}" \
  "${res[single-n1.p99_ms]}" "${res[single-n3.p99_ms]}" "${res[cluster-n1.p99_ms]}" "${res[cluster-n3.p99_ms]}"
