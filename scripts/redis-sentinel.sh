#!/usr/bin/env bash
# A local Redis Sentinel topology for tests and operators: a master, one replica and three
# sentinels on loopback ports, with Debian's redis-server (`redis-server --sentinel`).
#
#   scripts/redis-sentinel.sh start              start everything and wait until it is ready
#   scripts/redis-sentinel.sh status             the master as a sentinel reports it, each node's role
#   scripts/redis-sentinel.sh restart-node PORT  start a killed node again from its own config
#   scripts/redis-sentinel.sh stop               stop every process started here, remove the folder
#
# start waits (30 s at most) until the replica's link to the master is up and every sentinel
# sees the master with 1 replica and 2 other sentinels, then prints exactly these lines on
# stdout (progress goes to stderr), ports as configured:
#   REDIS_SENTINELS=redis://127.0.0.1:26402,redis://127.0.0.1:26403,redis://127.0.0.1:26404
#   REDIS_SENTINEL_MASTER=hookgate
# so that `set -a; eval "$(scripts/redis-sentinel.sh start)"; set +a` exports them.
# start refuses (exit 1) while a process of an earlier start in the same folder is running:
# stop it first. A folder left by a start whose processes are all gone is replaced.
#
# Environment (read by start; status, restart-node and stop need only the folder, the rest
# is saved in it):
#   HOOKGATE_SENTINEL_DIR     the folder (default ${TMPDIR:-/tmp}/hookgate-sentinel)
#   HOOKGATE_SENTINEL_PORT    base port P (default 26400): master P, replica P+1,
#                             sentinels P+2, P+3, P+4 (all must be free)
#   HOOKGATE_SENTINEL_MASTER  the master's name in the sentinels (default hookgate)
#   HOOKGATE_SENTINEL_DOWN_AFTER_MS        sentinel down-after-milliseconds (default 5000)
#   HOOKGATE_SENTINEL_FAILOVER_TIMEOUT_MS  sentinel failover-timeout (default 10000)
#   HOOKGATE_SENTINEL_DEBUG   SENTINEL DEBUG timers applied to every sentinel once it answers
#                             (default none: Redis's own), e.g. "info-period 1000 publish-period
#                             500" for tests: see "Failover" below. No config file holds them.
#   HOOKGATE_SENTINEL_START_TIMEOUT        seconds start and restart-node wait (default 30)
# The quorum is 2 of the 3 sentinels.
#
# Layout: DIR/PORT/ per process. Master and replica: redis.conf (restart-node starts the node
# again from it; the sentinels rewrite it on failover), redis.pid, redis.log, data/ (append-only
# file, fsync always, noeviction). Sentinels: sentinel.conf (rewritten by the sentinel),
# sentinel.pid, sentinel.log.
#
# Failover, as a test drives it: SIGKILL the master (pid in DIR/P/redis.pid); after
# down-after-milliseconds the sentinels promote the replica; `restart-node P` starts the old
# master again as a master of its own data, and a sentinel turns it into a replica of the new
# master once it has looked at it (every info-period, 10 s) and seen it up and a master for
# 4 publish-periods (8 s): the rejoin takes ~10 s. HOOKGATE_SENTINEL_DEBUG="info-period 1000
# publish-period 500" makes that ~2 s, and start ~1 s instead of ~2.5 s (the sentinels find
# each other through the hellos they send every publish-period).
set -euo pipefail

me=redis-sentinel
# Absolute, symbolic links resolved: the processes' working folders are compared with it.
dir=$(realpath -m -- "${HOOKGATE_SENTINEL_DIR:-${TMPDIR:-/tmp}/hookgate-sentinel}")
dir_var=HOOKGATE_SENTINEL_DIR
marker=topology.env
# shellcheck source=scripts/redis-local.sh
. "$(dirname "$0")/redis-local.sh"
all_ports() { echo "$master_port" "$replica_port" "${sentinel_ports[@]}"; }

start_sentinel() { # port
  redis-server "$dir/$1/sentinel.conf" --sentinel >/dev/null
  started+=("$1")
}
# Applies HOOKGATE_SENTINEL_DEBUG to a sentinel that answers (a restart loses it).
tune_sentinel() { # port
  [ -n "${sentinel_debug// /}" ] || return 0
  local params
  read -ra params <<<"$sentinel_debug"
  [ "$(rcli "$1" sentinel debug "${params[@]}")" = OK ] ||
    die "SENTINEL DEBUG $sentinel_debug failed on $1 (it needs Redis 7.0 or later)"
}

write_node_conf() { # port, [master port]
  mkdir -p "$dir/$1/data"
  {
    echo "# written by scripts/redis-sentinel.sh; the sentinels rewrite it on failover"
    echo "port $1"
    echo "bind 127.0.0.1"
    echo "daemonize yes"
    echo "pidfile $dir/$1/redis.pid"
    echo "logfile $dir/$1/redis.log"
    echo "dir $dir/$1/data"
    # As in production: every write in the append-only file, fsync'd before the reply, and
    # never evicted. No RDB snapshots on a timer (the AOF is the durable copy).
    echo "appendonly yes"
    echo "appendfsync always"
    echo "maxmemory-policy noeviction"
    echo 'save ""'
    # A (re)joining replica is synced at once instead of after the default 5 s wait for others.
    echo "repl-diskless-sync-delay 0"
    if [ -n "${2:-}" ]; then echo "replicaof 127.0.0.1 $2"; fi
  } >"$dir/$1/redis.conf"
}

write_sentinel_conf() { # port
  mkdir -p "$dir/$1"
  cat >"$dir/$1/sentinel.conf" <<CONF
# written by scripts/redis-sentinel.sh; the sentinel rewrites it
port $1
bind 127.0.0.1
daemonize yes
pidfile $dir/$1/sentinel.pid
logfile $dir/$1/sentinel.log
dir $dir/$1
sentinel monitor $master_name 127.0.0.1 $master_port 2
sentinel down-after-milliseconds $master_name $down_after_ms
sentinel failover-timeout $master_name $failover_timeout_ms
sentinel parallel-syncs $master_name 1
CONF
}

replica_linked() { [ "$(info_field "$replica_port" replication master_link_status)" = up ]; }
sentinel_field() { # sentinel port, field of SENTINEL MASTER
  rcli "$1" sentinel master "$master_name" | awk -v k="$2" 'NR % 2 == 1 { key = $0; next } key == k { print; exit }'
}
sentinels_ready() {
  local s
  for s in "${sentinel_ports[@]}"; do
    [ "$(sentinel_field "$s" num-other-sentinels)" = 2 ] || return 1
    [ "$(sentinel_field "$s" num-slaves)" = 1 ] || return 1
  done
}

cmd_start() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    die "redis-server and redis-cli are required (Debian: apt-get install redis-server)"
  fi
  local base=${HOOKGATE_SENTINEL_PORT:-26400}
  master_name=${HOOKGATE_SENTINEL_MASTER:-hookgate}
  down_after_ms=${HOOKGATE_SENTINEL_DOWN_AFTER_MS:-5000}
  failover_timeout_ms=${HOOKGATE_SENTINEL_FAILOVER_TIMEOUT_MS:-10000}
  sentinel_debug=${HOOKGATE_SENTINEL_DEBUG:-}
  [[ $sentinel_debug =~ ^[[:space:]]*([a-z-]+[[:space:]]+[0-9]+[[:space:]]*)*$ ]] ||
    die "HOOKGATE_SENTINEL_DEBUG must be pairs of a SENTINEL DEBUG timer and a number: $sentinel_debug"
  local timeout_s=${HOOKGATE_SENTINEL_START_TIMEOUT:-30}
  local v
  for v in "$base" "$down_after_ms" "$failover_timeout_ms" "$timeout_s"; do
    is_uint "$v" || die "not a number: $v"
  done
  if [ "$base" -lt 1 ] || [ "$((base + 4))" -gt 65535 ]; then die "HOOKGATE_SENTINEL_PORT out of range: $base"; fi
  [[ $master_name =~ ^[A-Za-z0-9._-]+$ ]] || die "HOOKGATE_SENTINEL_MASTER must be letters, digits, . _ -: $master_name"
  master_port=$base replica_port=$((base + 1))
  sentinel_ports=("$((base + 2))" "$((base + 3))" "$((base + 4))")

  if [ -e "$dir" ]; then
    [ -f "$dir/$marker" ] || die "$dir exists and was not made by this script: choose another HOOKGATE_SENTINEL_DIR"
    (
      load_state
      for port in $(all_ports); do
        [ -z "$(pid_of "$port")" ] || die "already running in $dir (port $port): run stop first"
      done
    )
    say "removing the leftovers of an earlier start in $dir"
    rm -rf "$dir"
  fi
  local port
  for port in $(all_ports); do
    port_free "$port" || die "port $port is in use: choose another HOOKGATE_SENTINEL_PORT"
  done

  local t0
  t0=$(now_ms)
  deadline=$((t0 + timeout_s * 1000))
  mkdir -p "$dir"
  {
    echo "master_port=$master_port replica_port=$replica_port"
    echo "sentinel_ports=(${sentinel_ports[*]})"
    echo "master_name=$master_name"
    echo "sentinel_debug='$sentinel_debug'"
  } >"$dir/$marker"
  started=()
  # A start that fails stops what it started; the logs stay in the folder (stop removes it).
  trap 'if [ "$?" -ne 0 ]; then kill_all; say "start failed: logs in $dir, remove it with stop"; fi' EXIT

  write_node_conf "$master_port"
  write_node_conf "$replica_port" "$master_port"
  say "starting the master on $master_port and its replica on $replica_port in $dir"
  start_node "$master_port"
  start_node "$replica_port"
  wait_for "the master to answer" pingable "$master_port"
  wait_for "the replica to answer" pingable "$replica_port"
  wait_for "the replica's link to the master" replica_linked
  say "replica in sync after $(($(now_ms) - t0)) ms"
  # The sentinels start once the replica is attached: their first INFO of the master already
  # lists it (otherwise they would learn of it at their next INFO, 10 s later).
  say "starting sentinels on ${sentinel_ports[*]} (quorum 2, down-after ${down_after_ms} ms, failover-timeout ${failover_timeout_ms} ms)"
  for port in "${sentinel_ports[@]}"; do
    write_sentinel_conf "$port"
    start_sentinel "$port"
  done
  for port in "${sentinel_ports[@]}"; do
    wait_for "the sentinel on $port to answer" pingable "$port"
    tune_sentinel "$port"
  done
  wait_for "every sentinel to see the replica and the 2 other sentinels" sentinels_ready
  trap - EXIT
  say "ready in $(($(now_ms) - t0)) ms"
  local urls=() s
  for s in "${sentinel_ports[@]}"; do urls+=("redis://127.0.0.1:$s"); done
  (IFS=,; echo "REDIS_SENTINELS=${urls[*]}")
  echo "REDIS_SENTINEL_MASTER=$master_name"
}


cmd_status() {
  [ -e "$dir" ] || die "no topology in $dir"
  load_state
  local s addr="" from=""
  for s in "${sentinel_ports[@]}"; do
    addr=$(rcli "$s" sentinel get-master-addr-by-name "$master_name" | paste -sd: -)
    if [ -n "$addr" ]; then from=$s; break; fi
  done
  if [ -n "$addr" ]; then
    echo "master $master_name: $addr (as sentinel 127.0.0.1:$from reports it)"
  else
    echo "master $master_name: no sentinel answers"
  fi
  local port pid role
  for port in $(all_ports); do
    pid=$(pid_of "$port")
    if [ -z "$pid" ]; then echo "127.0.0.1:$port down"; continue; fi
    if [ -f "$dir/$port/sentinel.conf" ]; then
      echo "127.0.0.1:$port sentinel (pid $pid)"
      continue
    fi
    role=$(info_field "$port" replication role)
    if [ "$role" = slave ]; then
      echo "127.0.0.1:$port replica of $(info_field "$port" replication master_host):$(info_field "$port" replication master_port), link $(info_field "$port" replication master_link_status) (pid $pid)"
    else
      echo "127.0.0.1:$port ${role:-not answering} (pid $pid, $(info_field "$port" replication connected_slaves) replica(s))"
    fi
  done
  [ -n "$addr" ]
}

cmd_restart_node() { # port
  local port=${1:-}
  is_uint "$port" || die "usage: $0 restart-node PORT"
  [ -e "$dir" ] || die "no topology in $dir"
  load_state
  [ -z "$(pid_of "$port")" ] || die "the node on port $port is running"
  port_free "$port" || die "port $port is in use by another program"
  deadline=$(($(now_ms) + ${HOOKGATE_SENTINEL_START_TIMEOUT:-30} * 1000))
  started=()
  if [ -f "$dir/$port/redis.conf" ]; then
    start_node "$port"
  elif [ -f "$dir/$port/sentinel.conf" ]; then
    start_sentinel "$port"
  else
    die "port $port is no node of the topology in $dir ($(all_ports))"
  fi
  wait_for "the node on $port to answer" pingable "$port"
  if [ -f "$dir/$port/sentinel.conf" ]; then tune_sentinel "$port"; fi
  say "the node on $port runs again (pid $(pid_of "$port"))"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart-node) cmd_restart_node "${2:-}" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
