#!/usr/bin/env bash
# Slow-sender benchmark: p50/p99 of valid signed webhooks at a fixed rate on one replica,
#  (a) with no attack, (b) while ~500 slowloris connections drip one header byte a second and
#  never finish their heads, (c) while a few loops send 500-header (~100 KiB) heads over and
#  over. Alongside loadgen's kept-alive connections, 20 webhooks/s go each on a new connection
#  (scripts/http-attack.py fresh), which would show an attack delaying accepts. Prints the
#  figures side by side; asserts nothing (the target: p99 under 50 ms).
#   scripts/bench-slowloris.sh [RATE] [SECONDS] [SLOWLORIS_CONNECTIONS] [BOMB_LOOPS]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-200}
seconds=${2:-10}
slow=${3:-500}
bombs=${4:-4}
port=${BENCH_PORT:-18080}
. scripts/lib.sh
hg_setup bench "$port"
cargo build --release --quiet
bin=target/release/hookgate

{ hg_config_head "$port"; hg_chatwoot_source; } > "$workdir/bench.toml"

RUST_LOG=warn "$bin" --config "$workdir/bench.toml" serve 2>"$workdir/serve.log" &
server=$!
pids+=("$server")
hg_wait_for "http://127.0.0.1:$port/ready"

load() {
  "$bin" --config "$workdir/bench.toml" loadgen --source chatwoot --url "http://127.0.0.1:$port" \
    --rate "$rate" --seconds "$seconds" --connections 16 2>/dev/null | grep '^figures:'
}
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
rss_mib() { echo $(( $(awk '/VmRSS/ {print $2}' "/proc/$server/status") / 1024 )); }

row() { printf '%-20s %7s %7s %5s %7s %6s | %7s %7s %4s | %5s %4s %5s\n' "$@"; }

# scenario name, attack mode (or none): the attack starts 3 s before the measured traffic (so
# it is at full strength) and stops 1 s after it. The measured traffic: loadgen's kept-alive
# connections and, at the same time, 20 webhooks/s each on a new connection.
run() {
  local name=$1 mode=$2 figures fresh fds ticks
  if [ "$mode" != none ]; then
    local n=$slow; [ "$mode" = bomb ] && n=$bombs
    # nice: the attacker shares the 2 cores here; a real one spends its own CPU elsewhere.
    nice -n 19 python3 scripts/http-attack.py "$mode" 127.0.0.1 "$port" $((seconds + 4)) "$n" \
      >"$workdir/attack.out" &
    attacker=$!
    sleep 3
  fi
  fds=$(find "/proc/$server/fd" -mindepth 1 -maxdepth 1 | wc -l)
  python3 scripts/http-attack.py fresh 127.0.0.1 "$port" "$seconds" 20 >"$workdir/fresh.out" &
  local prober=$!
  ticks=$(cpu_ticks)
  figures=$(load)
  ticks=$(( $(cpu_ticks) - ticks ))
  wait "$prober"
  fresh=$(cat "$workdir/fresh.out")
  if [ "$mode" != none ]; then
    wait "$attacker"
    attacks+=("$name: $(sed 's/^attack: //' "$workdir/attack.out")")
  fi
  row "$name" "$(field "$figures" p50_ms)" "$(field "$figures" p99_ms)" "$(field "$figures" ok)" \
    "$(field "$figures" non_2xx)" "$(field "$figures" errors)" "$(field "$fresh" p50_ms)" \
    "$(field "$fresh" p99_ms)" "$(sed -n 's/.*answers=200=\([0-9]*\).*/\1/p' <<<"$fresh")" "$fds" "$(rss_mib)" \
    "$(( ticks * 100 / $(getconf CLK_TCK) / seconds ))"
}
attacks=()

echo "== valid webhooks at $rate/s for $seconds s (16 connections) on one replica, $(nproc) cores"
echo "   request head timeout: 3000 ms (default); attack from python3 (nice 19) on the same machine"
"$bin" --config "$workdir/bench.toml" loadgen --source chatwoot --url "http://127.0.0.1:$port" \
  --requests 5000 --connections 16 >/dev/null 2>&1
row "" "loadgen" "(kept" "alive)" "" "" "new" "conn" "20/s" "" "" ""
row scenario p50_ms p99_ms ok non_2xx errors p50_ms p99_ms ok fds MiB cpu%
run "no attack" none
run "slowloris x$slow" slowloris
run "header bomb x$bombs" bomb
echo "(fds: the server's open descriptors as the measured traffic starts; MiB: its RSS after;"
echo " cpu%: the server's CPU while measured, 100 = one core)"
printf 'attack %s\n' "${attacks[@]}"
if grep -q . "$workdir/serve.log"; then
  echo "server log: $(wc -l <"$workdir/serve.log") lines at warn and above, e.g.:"
  sort "$workdir/serve.log" | cut -c1-160 | uniq -c | sort -rn | head -3
fi
