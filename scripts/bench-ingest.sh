#!/usr/bin/env bash
# Ingest benchmark: signed webhooks/s and p50/p99 through the full ingest path (verify,
# atomic dedup + enqueue, audit on), and the same load against a minimal actix handler doing
# one Redis EVAL per request (hookgate-tools baseline-server), on four Redis setups in one run:
#   shared    the Redis of REDIS_URL (default 127.0.0.1:6379), as it is configured;
#   everysec  a private redis-server, appendonly yes + appendfsync everysec (fresh per run);
#   always    a private redis-server, appendonly yes + appendfsync always (fresh per run);
#             both with auto-aof-rewrite-min-size BENCH_AOF_REWRITE_MIN (default 1gb): at
#             Redis's 64mb, hookgate's entries (id, key, type, time, content type, headers,
#             body: about 1.8 times the baseline's bytes) crossed it within a run and the
#             baseline's did not, so the pair compared an AOF rewrite (a fork and a dump of
#             the whole data set on the shared cores), not the write path;
#   down      hookgate only: a private redis-server killed once hookgate is ready, so every
#             webhook goes to the disk spool (fsync'd) and is answered 200 "spooled".
# Also the hookgate process's peak RSS (VmHWM) and CPU per run. Prints the figures and a
# summary block; asserts nothing. Private Redis data, spools and the audit database live in
# temporary places removed on exit.
#   scripts/bench-ingest.sh [REQUESTS] [CONNECTIONS]
# BENCH_PORT, BENCH_BASELINE_PORT: the servers' ports; BENCH_REDIS_PORT: the first port tried
# for the private redis-servers. HOOKGATE_BIN, HOOKGATE_TOOLS: binaries to measure instead of
# this tree's release build (to compare with an older build on the same machine).
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
connections=${2:-64}
port=${BENCH_PORT:-18080}
base_port=${BENCH_BASELINE_PORT:-18099}
redis_port=${BENCH_REDIS_PORT:-16390}
aof_rewrite_min=${BENCH_AOF_REWRITE_MIN:-1gb}
. scripts/lib.sh
hg_setup bench "$port" "$base_port"
redis_pids=()
run_dbs=()
cleanup() {
  local p
  for p in "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  hg_cleanup
  for p in "${run_dbs[@]}"; do
    psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$p\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
  # The baseline server writes under its own prefix.
  redis-cli -u "$redis_url" --scan --pattern "hookgate-baseline:*" |
    xargs -r -n 500 redis-cli -u "$redis_url" del >/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${HOOKGATE_BIN:-}" ] || [ -z "${HOOKGATE_TOOLS:-}" ]; then
  cargo build --release --quiet --bins
fi
bin=${HOOKGATE_BIN:-${CARGO_TARGET_DIR:-target}/release/hookgate}
tools=${HOOKGATE_TOOLS:-${CARGO_TARGET_DIR:-target}/release/hookgate-tools}

{ hg_config_head "$port"; hg_chatwoot_source ""; } > "$workdir/bench.toml"


load() { # url requests: loadgen's figures line
  "$tools" --config "$workdir/bench.toml" loadgen --source chatwoot --url "$1" \
    --requests "$2" --connections "$connections" 2>/dev/null | grep '^figures:'
}

# A private redis-server on the first free port from $redis_port, data in its own folder.
# Sets r_pid and r_url.
redis_start() { # name, redis-server options...
  local name=$1 p=$redis_port dir _
  shift
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  dir=$(mktemp -d "$workdir/redis-$name.XXXX")
  redis-server --port "$p" --bind 127.0.0.1 --dir "$dir" --save "" --logfile "$dir/log" "$@" &
  r_pid=$!
  redis_pids+=("$r_pid")
  r_url="redis://127.0.0.1:$p"
  for _ in $(seq 1 100); do
    if redis-cli -u "$r_url" ping >/dev/null 2>&1; then
      kill -0 "$r_pid" 2>/dev/null && return 0
      break
    fi
    sleep 0.1
  done
  echo "redis-server $name did not start on port $p:" >&2
  tail -5 "$dir/log" >&2
  exit 1
}
redis_stop() { kill "$r_pid" 2>/dev/null || true; wait "$r_pid" 2>/dev/null || true; redis_pids=(); }
aof_figures() { # url: the AOF's size and rewrites so far of a private Redis
  local info
  info=$(redis-cli -u "$1" info persistence 2>/dev/null | tr -d '\r')
  printf 'aof=%sMiB aof_rewrites=%s' \
    "$(( $(sed -n 's/^aof_current_size://p' <<<"$info") / 1048576 ))" \
    "$(sed -n 's/^aof_rewrites://p' <<<"$info")"
}
aof_of() { # url: the Redis's appendonly/appendfsync, e.g. "appendonly=no"
  local ao fs
  ao=$(redis-cli -u "$1" config get appendonly 2>/dev/null | sed -n 2p)
  fs=$(redis-cli -u "$1" config get appendfsync 2>/dev/null | sed -n 2p)
  if [ "$ao" = yes ]; then echo "appendonly=yes appendfsync=$fs"; else echo "appendonly=${ao:-?}"; fi
}
outcomes() { # hookgate's ingest answers by outcome since start, e.g. "queued=105000 spooled=0"
  local m
  m=$(curl -s "http://127.0.0.1:$port/metrics" | grep '^hookgate_ingest_requests_total{' || true)
  printf 'queued=%s spooled=%s\n' \
    "$(awk '/outcome="queued"/ {s += $NF} END {print s + 0}' <<<"$m")" \
    "$(awk '/outcome="spooled"/ {s += $NF} END {print s + 0}' <<<"$m")"
}

declare -A res # "<run>.<figure>" -> value
row() { printf '%-14s %8s %6s %7s %7s %6s %6s %7s %7s %4s %8s %4s %7s\n' "$@"; }

# Runs one measured load against a warmed-up server, pid $1 on port $2; records rps, p50,
# p99, non-2xx, errors and the server's CPU under run name $3.
measure() { # pid port run
  local pid=$1 url="http://127.0.0.1:$2" run=$3 figures t0 s0 ms rpid="" r0=0
  # The Redis server's CPU per webhook: what group commit saves shows here, whatever the
  # contention of the 2 cores (the shared Redis also counts other users' commands).
  if [ "$run" != hg_down ]; then
    rpid=$(redis-cli -u "$redis" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p')
    if [ -n "$rpid" ] && [ -r "/proc/$rpid/stat" ]; then r0=$(ticks "$rpid"); else rpid=""; fi
  fi
  t0=$(ticks "$pid"); s0=$(date +%s%N)
  figures=$(load "$url" "$requests")
  ms=$(( ($(date +%s%N) - s0) / 1000000 ))
  res[$run.cpu]=$(cpu_pct $(( $(ticks "$pid") - t0 )) $(( ms > 0 ? ms : 1 )))
  res[$run.redis_us]=-
  if [ -n "$rpid" ]; then
    res[$run.redis_us]=$(( ($(ticks "$rpid") - r0) * 1000000 / $(getconf CLK_TCK) / requests ))
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "  $run: the server died during the load ($figures)" >&2
    exit 1
  fi
  local f
  for f in rps p50_ms p99_ms ok non_2xx errors; do res[$run.$f]=$(field "$figures" "$f"); done
  res[$run.load]=$(cut -d' ' -f1 /proc/loadavg)
  echo "  $run: $figures cpu%=${res[$run.cpu]} loadavg=${res[$run.load]}"
  if [ "$redis" != "$redis_url" ] && [ "$run" != hg_down ]; then
    echo "  $run: private Redis after the run: $(aof_figures "$redis")"
  fi
}

# hookgate against the Redis at $2 with a spool folder of its own; with "kill-redis" as $3,
# $r_pid is killed once hookgate is ready (every webhook then goes to the spool).
hookgate_run() { # run redis-url [kill-redis]
  local run=$1 url=$2 before after
  redis=$url
  # A database per run: runs share no Redis, and a gateway finding a trail whose events its
  # Redis does not have re-queues them (recovery), which would load the measured run. Without
  # TLS to the local PostgreSQL, as compose's runs (libpq's default, sslmode=prefer, encrypts
  # every audit COPY to a server with ssl on, as Debian's is).
  run_dbs+=("${db}_$run")
  REDIS_URL=$url DATABASE_URL="$pg/${db}_$run?sslmode=${BENCH_PG_SSLMODE:-disable}" \
    HOOKGATE_SPOOL_DIR="$workdir/spool-$run" RUST_LOG=warn \
    "$bin" --config "$workdir/bench.toml" serve 2>>"$workdir/serve-$run.log" &
  local pid=$!
  pids+=("$pid")
  hg_wait_for "http://127.0.0.1:$port/ready"
  if [ "${3:-}" = kill-redis ]; then redis_stop; fi
  load "http://127.0.0.1:$port" 5000 >/dev/null
  before=$(outcomes)
  measure "$pid" "$port" "$run"
  after=$(outcomes)
  res[$run.queued]=$(( $(field "$after" queued) - $(field "$before" queued) ))
  res[$run.spooled]=$(( $(field "$after" spooled) - $(field "$before" spooled) ))
  res[$run.hwm]=$(( $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") / 1024 ))
  echo "  $run: measured answers queued=${res[$run.queued]} spooled=${res[$run.spooled]};" \
    "peak RSS (VmHWM) ${res[$run.hwm]} MiB"
  if [ "$run" = hg_shared ]; then
    # Audit rows land asynchronously: wait up to 60 s for all, and say how long it took.
    local accepted=$((requests + 5000)) t0 _
    t0=$(date +%s%N)
    for _ in $(seq 1 600); do
      res[audit]=$(psql "$pg/${db}_$run" -Atc "select count(*) from webhook_events" 2>/dev/null || echo "?")
      [ "${res[audit]}" = "$accepted" ] && break
      sleep 0.1
    done
    res[audit_lag]=$(( ($(date +%s%N) - t0) / 1000000 ))
    echo "  audit rows written: ${res[audit]} (of $accepted accepted), all of them ${res[audit_lag]} ms after the load"
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pids=()
}

baseline_run() { # run redis-url
  local run=$1
  redis=$2
  REDIS_URL=$2 RUST_LOG=warn "$tools" --config "$workdir/bench.toml" baseline-server \
    --bind "127.0.0.1:$base_port" 2>>"$workdir/baseline-$run.log" &
  local pid=$! _
  pids+=("$pid")
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$base_port/" && break; sleep 0.1; done
  load "http://127.0.0.1:$base_port" 5000 >/dev/null
  measure "$pid" "$base_port" "$run"
  res[$run.queued]=-; res[$run.spooled]=-; res[$run.hwm]=-
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pids=()
}

shared_desc="shared $redis_url ($(aof_of "$redis_url"))"
echo "== ingest: $requests signed chatwoot webhooks per run (after 5000 warm-up), $connections connections, $(nproc) cores"
echo "== Redis: $shared_desc"
# Which server goes first alternates from pair to pair (the machine warms up, and other
# users' work comes and goes): the baseline first on the shared Redis and with `always`,
# hookgate first with `everysec`.
baseline_run base_shared "$redis_url"
hookgate_run hg_shared "$redis_url"

declare -A desc
# Each on a fresh private redis-server with that appendfsync; $2 says who goes first.
aof_pair() { # appendfsync policy, first (hookgate|baseline)
  local order=(hookgate baseline) who
  [ "$2" = baseline ] && order=(baseline hookgate)
  for who in "${order[@]}"; do
    redis_start "$1" --appendonly yes --appendfsync "$1" --auto-aof-rewrite-min-size "$aof_rewrite_min"
    desc[$1]="private $r_url ($(aof_of "$r_url"), auto-aof-rewrite-min-size $aof_rewrite_min, fresh per run)"
    [ "$who" = "${order[0]}" ] && echo "== Redis: ${desc[$1]}"
    if [ "$who" = hookgate ]; then hookgate_run "hg_$1" "$r_url"; else baseline_run "base_$1" "$r_url"; fi
    redis_stop
  done
}
aof_pair everysec hookgate
aof_pair always baseline

redis_start down
echo "== Redis: down (private $r_url killed once hookgate is ready); spool in $workdir/spool-hg_down"
hookgate_run hg_down "$r_url" kill-redis

ratio() { printf '%.2f' "$(echo "${res[$1.rps]} / ${res[$2.rps]}" | bc -l)"; }
echo
echo "== summary: $requests requests per run, $connections connections, $(nproc) cores, $(date -u +%FT%TZ)"
echo "   shared:   $shared_desc"
echo "   everysec: ${desc[everysec]}"
echo "   always:   ${desc[always]}"
echo "   down:     a killed private redis-server; hookgate spools to a temporary folder"
row run redis rps p50_ms p99_ms non2xx errors queued spooled cpu% redis_us MiB loadavg
for run in hg_shared base_shared hg_everysec base_everysec hg_always base_always hg_down; do
  row "$run" "${run#*_}" "${res[$run.rps]}" "${res[$run.p50_ms]}" "${res[$run.p99_ms]}" \
    "${res[$run.non_2xx]}" "${res[$run.errors]}" "${res[$run.queued]}" "${res[$run.spooled]}" \
    "${res[$run.cpu]}" "${res[$run.redis_us]}" "${res[$run.hwm]}" "${res[$run.load]}"
done
echo "(cpu%: the server process's CPU during the measured load, 100 = one core;"
echo " redis_us: the Redis server's CPU per webhook in microseconds (group commit's saving);"
echo " MiB: hookgate's peak RSS, VmHWM; queued/spooled: hookgate's answers to the measured load;"
echo " loadavg: the machine's 1-minute load average after the run, which the other users' work raises)"
echo "ratios:"
echo "  hookgate/baseline, shared:              $(ratio hg_shared base_shared)   (target >= 1.0)"
echo "  hookgate/baseline, everysec:            $(ratio hg_everysec base_everysec)"
echo "  hookgate/baseline, always:              $(ratio hg_always base_always)"
echo "  hookgate always/shared:                 $(ratio hg_always hg_shared)"
echo "  hookgate always/everysec:               $(ratio hg_always hg_everysec)"
echo "  baseline always/everysec:               $(ratio base_always base_everysec)"
echo "  hookgate spooling (Redis down)/shared:  $(ratio hg_down hg_shared)"
us_ratio() { [ "${res[$1.redis_us]}" != - ] && [ "${res[$2.redis_us]}" != - ] && [ "${res[$2.redis_us]}" -gt 0 ] &&
  printf '%.2f' "$(echo "${res[$1.redis_us]} / ${res[$2.redis_us]}" | bc -l)" || echo "?"; }
echo "Redis CPU per webhook, hookgate/baseline (below 1: fewer Redis calls than one per request):"
echo "  shared $(us_ratio hg_shared base_shared), everysec $(us_ratio hg_everysec base_everysec), always $(us_ratio hg_always base_always)"
echo "peak RSS of hookgate, shared run: ${res[hg_shared.hwm]} MiB (target < 100)"
echo "audit rows after the shared run: ${res[audit]} (of $((requests + 5000)) accepted), ${res[audit_lag]} ms after the load"
echo "targets on 2 cores: ratio >= 1.0, p99 < 10 ms, RSS < 100 MiB"
printf 'RESULT full_rps=%s full_p50_ms=%s full_p99_ms=%s baseline_rps=%s baseline_p99_ms=%s ratio=%s' \
  "${res[hg_shared.rps]}" "${res[hg_shared.p50_ms]}" "${res[hg_shared.p99_ms]}" \
  "${res[base_shared.rps]}" "${res[base_shared.p99_ms]}" "$(ratio hg_shared base_shared)"
printf ' always_rps=%s always_p99_ms=%s baseline_always_rps=%s everysec_rps=%s spool_rps=%s spool_p99_ms=%s spool_non_2xx=%s rss_mib=%s' \
  "${res[hg_always.rps]}" "${res[hg_always.p99_ms]}" "${res[base_always.rps]}" \
  "${res[hg_everysec.rps]}" "${res[hg_down.rps]}" "${res[hg_down.p99_ms]}" \
  "${res[hg_down.non_2xx]}" "${res[hg_shared.hwm]}"
printf ' redis_us=%s baseline_redis_us=%s everysec_redis_us=%s baseline_everysec_redis_us=%s\n' \
  "${res[hg_shared.redis_us]}" "${res[base_shared.redis_us]}" "${res[hg_everysec.redis_us]}" \
  "${res[base_everysec.redis_us]}"
