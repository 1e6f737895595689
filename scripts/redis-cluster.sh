#!/usr/bin/env bash
# A local Redis Cluster for tests and operators: three masters with one replica each on
# loopback ports, made with `redis-cli --cluster create`, with Debian's redis-server.
#
#   scripts/redis-cluster.sh start              start six nodes, create the cluster, wait until ready
#   scripts/redis-cluster.sh status             CLUSTER NODES as a live node reports it
#   scripts/redis-cluster.sh restart-node PORT  start a killed node again from its own config
#   scripts/redis-cluster.sh stop               stop every node started here, remove the folder
#
# start waits (30 s at most) until every node reports cluster_state:ok and knows the 6 nodes,
# each of the 3 masters has 1 connected replica and each replica's link is up, then prints
# exactly this line on stdout (progress goes to stderr), ports as configured:
#   REDIS_CLUSTER_NODES=redis://127.0.0.1:7100,redis://127.0.0.1:7101,...,redis://127.0.0.1:7105
# so that `set -a; eval "$(scripts/redis-cluster.sh start)"; set +a` exports it.
# start refuses (exit 1) while a node of an earlier start in the same folder is running:
# stop it first. A folder left by a start whose nodes are all gone is replaced.
#
# Environment (read by start; status, restart-node and stop need only the folder, the rest
# is saved in it):
#   HOOKGATE_CLUSTER_DIR      the folder (default ${TMPDIR:-/tmp}/hookgate-cluster)
#   HOOKGATE_CLUSTER_PORT     base port P (default 7100): nodes on P..P+5; their cluster bus
#                             ports P+10000..P+10005 must be free too
#   HOOKGATE_CLUSTER_NODE_TIMEOUT_MS  cluster-node-timeout (default 5000): how long a master
#                             is unreachable before its replica takes over
#   HOOKGATE_CLUSTER_START_TIMEOUT    seconds start and restart-node wait (default 30)
#
# Layout: DIR/PORT/ per node: redis.conf (restart-node starts the node again from it),
# nodes.conf (the node's cluster configuration, kept by Redis), redis.pid, redis.log, data/
# (append-only file, fsync always, noeviction). Which three nodes are masters is chosen by
# redis-cli: `status` shows it.
#
# Failover, as a test drives it: SIGKILL a master (pid in DIR/PORT/redis.pid); after
# cluster-node-timeout its replica is promoted and cluster_state is ok again; `restart-node
# PORT` starts the old master, which learns the newer configuration from the others and
# rejoins as a replica of its former replica.
set -euo pipefail

me=redis-cluster
# Absolute, symbolic links resolved: the processes' working folders are compared with it.
dir=$(realpath -m -- "${HOOKGATE_CLUSTER_DIR:-${TMPDIR:-/tmp}/hookgate-cluster}")
dir_var=HOOKGATE_CLUSTER_DIR
marker=topology.env
# shellcheck source=scripts/redis-local.sh
. "$(dirname "$0")/redis-local.sh"
all_ports() { echo "${ports[@]}"; }


write_node_conf() { # port
  mkdir -p "$dir/$1/data"
  cat >"$dir/$1/redis.conf" <<CONF
# written by scripts/redis-cluster.sh
port $1
bind 127.0.0.1
daemonize yes
pidfile $dir/$1/redis.pid
logfile $dir/$1/redis.log
dir $dir/$1/data
cluster-enabled yes
cluster-config-file $dir/$1/nodes.conf
cluster-node-timeout $node_timeout_ms
# As in production: every write in the append-only file, fsync'd before the reply, and never
# evicted. No RDB snapshots on a timer (the AOF is the durable copy).
appendonly yes
appendfsync always
maxmemory-policy noeviction
save ""
# A (re)joining replica is synced at once instead of after the default 5 s wait for others.
repl-diskless-sync-delay 0
CONF
}

cluster_ready() {
  local port masters=0
  for port in "${ports[@]}"; do
    local info
    info=$(rcli "$port" cluster info)
    grep -qx 'cluster_state:ok' <<<"$info" || return 1
    grep -qx 'cluster_known_nodes:6' <<<"$info" || return 1
    info=$(rcli "$port" info replication)
    if grep -qx 'role:master' <<<"$info"; then
      grep -qx 'connected_slaves:1' <<<"$info" || return 1
      masters=$((masters + 1))
    else
      grep -qx 'master_link_status:up' <<<"$info" || return 1
    fi
  done
  [ "$masters" = 3 ]
}

cmd_start() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    die "redis-server and redis-cli are required (Debian: apt-get install redis-server)"
  fi
  local base=${HOOKGATE_CLUSTER_PORT:-7100}
  node_timeout_ms=${HOOKGATE_CLUSTER_NODE_TIMEOUT_MS:-5000}
  local timeout_s=${HOOKGATE_CLUSTER_START_TIMEOUT:-30}
  local v
  for v in "$base" "$node_timeout_ms" "$timeout_s"; do
    is_uint "$v" || die "not a number: $v"
  done
  if [ "$base" -lt 1 ] || [ "$((base + 10005))" -gt 65535 ]; then
    die "HOOKGATE_CLUSTER_PORT out of range (P+10005 must be a port): $base"
  fi
  ports=()
  local i
  for i in 0 1 2 3 4 5; do ports+=("$((base + i))"); done

  if [ -e "$dir" ]; then
    [ -f "$dir/$marker" ] || die "$dir exists and was not made by this script: choose another HOOKGATE_CLUSTER_DIR"
    (
      load_state
      for port in "${ports[@]}"; do
        [ -z "$(pid_of "$port")" ] || die "already running in $dir (port $port): run stop first"
      done
    )
    say "removing the leftovers of an earlier start in $dir"
    rm -rf "$dir"
  fi
  local port
  for port in "${ports[@]}"; do
    port_free "$port" || die "port $port is in use: choose another HOOKGATE_CLUSTER_PORT"
    port_free "$((port + 10000))" || die "cluster bus port $((port + 10000)) is in use: choose another HOOKGATE_CLUSTER_PORT"
  done

  local t0
  t0=$(now_ms)
  deadline=$((t0 + timeout_s * 1000))
  mkdir -p "$dir"
  echo "ports=(${ports[*]})" >"$dir/$marker"
  started=()
  # A start that fails stops what it started; the logs stay in the folder (stop removes it).
  trap 'if [ "$?" -ne 0 ]; then kill_all; say "start failed: logs in $dir, remove it with stop"; fi' EXIT

  say "starting nodes on ${ports[*]} in $dir (cluster-node-timeout ${node_timeout_ms} ms)"
  for port in "${ports[@]}"; do
    write_node_conf "$port"
    start_node "$port"
  done
  for port in "${ports[@]}"; do wait_for "the node on $port to answer" pingable "$port"; done
  local addrs=()
  for port in "${ports[@]}"; do addrs+=("127.0.0.1:$port"); done
  say "creating the cluster (3 masters, 1 replica each)"
  # Its report goes to stderr; it waits for the nodes to agree on the configuration itself.
  TERM=dumb timeout "$(((deadline - $(now_ms)) / 1000 + 1))" \
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >&2 ||
    die "redis-cli --cluster create failed"
  say "cluster created after $(($(now_ms) - t0)) ms"
  wait_for "cluster_state:ok on every node and a linked replica for each master" cluster_ready
  trap - EXIT
  say "ready in $(($(now_ms) - t0)) ms"
  local urls=()
  for port in "${ports[@]}"; do urls+=("redis://127.0.0.1:$port"); done
  (IFS=,; echo "REDIS_CLUSTER_NODES=${urls[*]}")
}


cmd_status() {
  [ -e "$dir" ] || die "no cluster in $dir"
  load_state
  local port nodes
  for port in "${ports[@]}"; do
    [ -n "$(pid_of "$port")" ] || continue
    nodes=$(rcli "$port" cluster nodes)
    [ -n "$nodes" ] || continue
    say "CLUSTER NODES as 127.0.0.1:$port reports it:"
    echo "$nodes"
    return 0
  done
  die "no node of ${ports[*]} answers"
}

cmd_restart_node() { # port
  local port=${1:-}
  is_uint "$port" || die "usage: $0 restart-node PORT"
  [ -e "$dir" ] || die "no cluster in $dir"
  load_state
  [ -f "$dir/$port/redis.conf" ] || die "port $port is no node of the cluster in $dir (${ports[*]})"
  [ -z "$(pid_of "$port")" ] || die "the node on port $port is running"
  port_free "$port" || die "port $port is in use by another program"
  deadline=$(($(now_ms) + ${HOOKGATE_CLUSTER_START_TIMEOUT:-30} * 1000))
  started=()
  start_node "$port"
  wait_for "the node on $port to answer" pingable "$port"
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
