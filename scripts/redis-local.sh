# shellcheck shell=bash
# Shared by scripts/redis-sentinel.sh and scripts/redis-cluster.sh: local redis-server
# processes in a folder of their own, recognised by port and working folder, stopped by pid.
# The sourcing script sets `me` (its name), `dir` (absolute), `dir_var` (the variable that
# sets it) and `marker` (its state file), and defines `all_ports` (every port of its
# topology, once its state is loaded).
# shellcheck disable=SC2154 # me, dir, dir_var, marker and started are the sourcing script's

say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
rcli() { # port, command...: one redis-cli call that cannot hang; nothing if no answer
  local port=$1; shift
  { timeout 3 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null || true; } | tr -d '\r'
}
info_field() { # port, section, field
  rcli "$1" info "$2" | sed -n "s/^$3://p"
}
pingable() { [ "$(rcli "$1" ping)" = PONG ]; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# A process is ours when it is a live (not zombie) redis-server on that port whose working
# folder is inside ours: a pid reused by another program is never signalled.
ours() { # pid, port
  local pid=$1 port=$2 state cmd cwd
  is_uint "$pid" && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ "$state" != Z ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == redis-server* && $cmd == *":$port"* ]] || return 1
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  [[ $cwd == "$dir"/* ]]
}
pid_of() { # port: the pid of our process (node or sentinel) on that port, or nothing
  local port=$1 f pid
  for f in "$dir/$port/redis.pid" "$dir/$port/sentinel.pid"; do
    [ -f "$f" ] || continue
    pid=$(tr -dc '0-9' <"$f")
    if ours "$pid" "$port"; then echo "$pid"; return 0; fi
  done
  # No pidfile (or a stale one): the process that answers on the port, if it is ours.
  pid=$(info_field "$port" server process_id)
  if [ -n "$pid" ] && ours "$pid" "$port"; then echo "$pid"; fi
}

load_state() {
  [ -f "$dir/$marker" ] || die "no topology in $dir (run start first, with the same $dir_var)"
  # shellcheck source=/dev/null
  . "$dir/$marker"
}

# Every process of the topology: SIGTERM, wait up to 10 s, then SIGKILL what is left.
kill_all() {
  local port pid pids=() deadline
  for port in $(all_ports); do
    pid=$(pid_of "$port")
    [ -z "$pid" ] || pids+=("$pid:$port")
  done
  [ "${#pids[@]}" -gt 0 ] || return 0
  for pid in "${pids[@]}"; do kill -TERM "${pid%%:*}" 2>/dev/null || true; done
  deadline=$(($(now_ms) + 10000))
  while :; do
    local left=()
    for pid in "${pids[@]}"; do
      if ours "${pid%%:*}" "${pid#*:}"; then left+=("$pid"); fi
    done
    [ "${#left[@]}" -gt 0 ] || return 0
    if [ "$(now_ms)" -ge "$deadline" ]; then
      say "still running after 10 s, sending SIGKILL: ${left[*]%%:*}"
      for pid in "${left[@]}"; do kill -KILL "${pid%%:*}" 2>/dev/null || true; done
      sleep 0.1
      return 0
    fi
    sleep 0.05
  done
}

# Polls CHECK (a function) until it succeeds; fails at the deadline or when a process died.
deadline=0
wait_for() { # what, check function, args...
  local what=$1; shift
  while ! "$@"; do
    local port
    for port in "${started[@]}"; do
      [ -n "$(pid_of "$port")" ] || die "the process on port $port exited ($(log_of "$port")): $(tail -n 3 "$(log_of "$port")" 2>/dev/null | tr '\n' ' ')"
    done
    [ "$(now_ms)" -lt "$deadline" ] || die "timed out waiting for $what (logs in $dir)"
    sleep 0.05
  done
}
log_of() { if [ -f "$dir/$1/sentinel.conf" ]; then echo "$dir/$1/sentinel.log"; else echo "$dir/$1/redis.log"; fi; }

start_node() { # port: a Redis (not a sentinel), from DIR/PORT/redis.conf
  redis-server "$dir/$1/redis.conf" >/dev/null
  started+=("$1")
}

# Stops every process of the topology and removes the folder (kept if one survives).
cmd_stop() {
  if [ ! -e "$dir" ]; then say "nothing in $dir: nothing to stop"; return 0; fi
  load_state
  kill_all
  local port
  for port in $(all_ports); do
    [ -z "$(pid_of "$port")" ] || die "the process on port $port is still running: $dir kept"
  done
  rm -rf "$dir"
  say "stopped; $dir removed"
}
