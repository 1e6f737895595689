#!/usr/bin/env bash
# The docker-compose topology without Docker: N hookgate replicas on local ports behind Nginx
# with the bundled config (nginx/nginx.conf, the upstreams filled in), on the local Redis and
# PostgreSQL (scripts/dev-services.sh starts them).
#
#   scripts/cluster.sh start N     migrate, start N replicas and Nginx, wait until all are ready
#   scripts/cluster.sh status      each replica and Nginx: pid, ready or not
#   scripts/cluster.sh kill I      SIGKILL replica I: the others take over its pending work
#   scripts/cluster.sh restart I   start replica I again (after kill)
#   scripts/cluster.sh stop        SIGTERM everything: replicas finish deliveries in flight
#
# Environment (read by start, always from the caller; status, kill, restart and stop use
# what the last start saved):
#   HOOKGATE_CONFIG  the replicas' configuration (default hookgate.example.toml)
#   CLUSTER_PORT     Nginx's port (default 8080); replica I listens on CLUSTER_PORT+I
#   CLUSTER_DIR      pids, logs and Nginx's config (default target/cluster)
#   HOOKGATE_BIN     the hookgate binary (default: built with cargo build --release)
#   CLUSTER_UNLIMITED  addresses (CIDR, space-separated) that Nginx does not rate limit, as
#                    the geo $unlimited_sender block of nginx.conf (a benchmark's client)
#   CLUSTER_TLS      1: Nginx serves HTTPS as well, with a throwaway certificate for 127.0.0.1
#                    and localhost made by openssl (its CA is CLUSTER_DIR/nginx/ca.pem, for
#                    `curl --cacert`), and redirects plain HTTP to it as compose's Nginx does
#                    with a certificate (but /health, /ready and ACME challenges)
#   CLUSTER_HTTPS_PORT  Nginx's HTTPS port with CLUSTER_TLS=1 (default 8443)
#   REDIS_URL, DATABASE_URL, HOOKGATE_ADMIN_TOKEN, RUST_LOG and the config's ${VARS} are
#   passed to the replicas as they are when start runs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CLUSTER_DIR:-$root/target/cluster}
say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$dir/$1.pid" 2>/dev/null || true; }
ready() { curl -sf -m 2 "$@" >/dev/null 2>&1; } # url, more curl options

load_state() {
  [ -f "$dir/cluster.env" ] || die "no cluster in $dir: run scripts/cluster.sh start N first"
  # shellcheck source=/dev/null
  . "$dir/cluster.env"
}

wait_ready() { # name, url, pid, more curl options
  local name=$1 url=$2 pid=$3
  shift 3
  for _ in $(seq 1 600); do
    ready "$url" "$@" && return 0
    if ! alive "$pid"; then
      tail -n 20 "$dir/$name.log" >&2 || true
      die "$name exited before it was ready (log: $dir/$name.log)"
    fi
    sleep 0.1
  done
  die "$name is not ready after 60 s (log: $dir/$name.log)"
}

start_replica() { # index
  local i=$1 port=$((CLUSTER_PORT + $1))
  if alive "$(pid_of "replica-$i")"; then die "replica $i is running already"; fi
  # Appends: a restarted replica's log follows the one it replaces.
  nohup "$dir/run-replica.sh" "$i" >>"$dir/replica-$i.log" 2>&1 &
  echo $! >"$dir/replica-$i.pid"
  wait_ready "replica-$i" "http://127.0.0.1:$port/ready" "$!"
}

cmd_start() {
  local n=${1:-}
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "usage: scripts/cluster.sh start N (N replicas, N >= 1)"
  # The saved state only says whether the previous cluster still runs. Read it in a subshell:
  # its HOOKGATE_CONFIG, CLUSTER_PORT and HOOKGATE_BIN must never replace the caller's.
  if [ -f "$dir/cluster.env" ] && (
    load_state
    for i in $(seq 1 "$REPLICAS"); do alive "$(pid_of "replica-$i")" && exit 0; done
    alive "$(pid_of nginx)"
  ); then
    die "a cluster is running in $dir: stop it first"
  fi
  # Debian puts nginx in /usr/sbin, which is not on a normal user's PATH.
  local nginx
  nginx=$(command -v nginx || command -v /usr/sbin/nginx) ||
    die "nginx is not installed (apt-get install nginx, or scripts/dev-services.sh)"
  local port=${CLUSTER_PORT:-8080}
  local config=${HOOKGATE_CONFIG:-$root/hookgate.example.toml}
  local bin=${HOOKGATE_BIN:-}
  local https_port=""
  case "${CLUSTER_TLS:-}" in
    1) https_port=${CLUSTER_HTTPS_PORT:-8443}
       [[ "$https_port" =~ ^[1-9][0-9]*$ ]] || die "CLUSTER_HTTPS_PORT is not a port: $https_port"
       if [ "$https_port" -ge "$port" ] && [ "$https_port" -le $((port + n)) ]; then
         die "CLUSTER_HTTPS_PORT $https_port is one of Nginx's or the replicas' ports ($port to $((port + n)))"
       fi
       command -v openssl >/dev/null || die "CLUSTER_TLS=1 needs openssl (apt-get install openssl)" ;;
    "" | 0) ;;
    *) die "CLUSTER_TLS is 1 (HTTPS as well) or 0/unset (plain HTTP only), not '$CLUSTER_TLS'" ;;
  esac
  for p in $(seq "$port" $((port + n))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "port $p is in use: set CLUSTER_PORT to a free range of $((n + 1)) ports"
    fi
  done
  if [ -n "$https_port" ] && (exec 3<>"/dev/tcp/127.0.0.1/$https_port") 2>/dev/null; then
    die "port $https_port is in use: set CLUSTER_HTTPS_PORT to a free port"
  fi
  if [ -z "$bin" ]; then
    say "building hookgate (release)"
    (cd "$root" && cargo build --release --quiet)
    bin=$root/target/release/hookgate
  fi
  mkdir -p "$dir"
  rm -f "$dir"/*.log "$dir"/*.pid
  config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")

  # Saved for status, kill, restart and stop; it may hold tokens, so it is private.
  (umask 077; {
    printf 'REPLICAS=%q\nCLUSTER_PORT=%q\nCLUSTER_HTTPS_PORT=%q\nHOOKGATE_BIN=%q\nHOOKGATE_CONFIG=%q\n' \
      "$n" "$port" "$https_port" "$bin" "$config"
  } >"$dir/cluster.env")
  # Spool folders of the replicas, one each, on this cluster's own "volume" (as compose's).
  export HOOKGATE_SPOOL_DIR=${HOOKGATE_SPOOL_DIR:-$dir/spool}
  # One launcher for start and restart, with the environment of this start.
  (umask 077; {
    echo '#!/usr/bin/env bash'
    export -p | grep -v -E '^declare -x (PWD|OLDPWD|SHLVL|_)='
    # Each replica gets its own id (hostname-pid), as each container does.
    echo 'unset HOOKGATE_REPLICA_ID PORT'
    # The launcher expands $1 (the replica's index) itself.
    # shellcheck disable=SC2016
    printf 'export HOOKGATE_BIND=127.0.0.1:$((%q + $1))\n' "$port"
    printf 'exec %q --config %q serve\n' "$bin" "$config"
  } >"$dir/run-replica.sh")
  chmod +x "$dir/run-replica.sh"
  # shellcheck source=/dev/null
  . "$dir/cluster.env"

  # As compose's `migrate` service: once, before any replica.
  "$bin" --config "$config" migrate >"$dir/migrate.log" 2>&1 ||
    { cat "$dir/migrate.log" >&2; die "migrations failed"; }

  for i in $(seq 1 "$n"); do start_replica "$i"; done

  # Nginx: the bundled config with this cluster's port, upstreams and temporary files.
  mkdir -p "$dir/nginx/tmp"
  sed -e "s|^\( *\)listen 8080;|\1listen 127.0.0.1:$port;|" \
      -e "s|^http {|http {\n    client_body_temp_path $dir/nginx/tmp/body;\n    proxy_temp_path $dir/nginx/tmp/proxy;\n    fastcgi_temp_path $dir/nginx/tmp/fastcgi;\n    uwsgi_temp_path $dir/nginx/tmp/uwsgi;\n    scgi_temp_path $dir/nginx/tmp/scgi;|" \
      "$root/nginx/nginx.conf" >"$dir/nginx/nginx.conf"
  grep -q "listen 127.0.0.1:$port;" "$dir/nginx/nginx.conf" || die "nginx.conf has no 'listen 8080;' line to fill in"
  local addr
  for addr in ${CLUSTER_UNLIMITED:-}; do
    sed -i "/^ *geo \$unlimited_sender {/a\        $addr 1;" "$dir/nginx/nginx.conf"
  done
  : >"$dir/nginx/upstreams.conf"
  for i in $(seq 1 "$n"); do
    echo "server 127.0.0.1:$((port + i)) max_fails=1 fail_timeout=2s;" >>"$dir/nginx/upstreams.conf"
  done
  # What both server blocks share, the HTTPS settings, and the ACME webroot, beside nginx.conf
  # as in compose; then tls.sh switches HTTPS on or off as compose's Nginx does at start: on
  # with a certificate in nginx/certs (a throwaway one with CLUSTER_TLS=1), off without.
  cp "$root/nginx/server.conf" "$root/nginx/https.conf" "$dir/nginx/"
  mkdir -p "$dir/nginx/acme"
  rm -rf "$dir/nginx/certs" "$dir/nginx/ca.pem"
  if [ -n "$https_port" ]; then
    # shellcheck source=SCRIPTDIR/lib.sh
    . "$root/scripts/lib.sh"
    hg_tls_cert "$dir/nginx" 127.0.0.1 localhost || die "openssl could not make a certificate"
  fi
  NGINX=$nginx sh "$root/nginx/tls.sh" "$dir/nginx" "127.0.0.1:${https_port:-8443}" "${https_port:-8443}" >/dev/null
  local globals="daemon off; pid $dir/nginx.pid;"
  # As root, Nginx's workers would run as nobody, who may not reach this folder.
  if [ "$(id -u)" -eq 0 ]; then globals="$globals user root;"; fi
  "$nginx" -t -q -e stderr -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g "$globals"
  nohup "$nginx" -e stderr -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g "$globals" \
    >"$dir/nginx-access.log" 2>"$dir/nginx.log" &
  local nginx_pid=$!
  wait_ready nginx "http://127.0.0.1:$port/ready" "$nginx_pid"
  if [ -n "$https_port" ]; then
    wait_ready nginx "https://127.0.0.1:$https_port/ready" "$nginx_pid" --cacert "$dir/nginx/ca.pem"
  fi

  cmd_status
  echo "http://127.0.0.1:$port"
  if [ -n "$https_port" ]; then
    echo "https://127.0.0.1:$https_port (curl --cacert $dir/nginx/ca.pem)"
  fi
}

cmd_status() {
  load_state
  local up=0 i pid state
  for i in $(seq 1 "$REPLICAS"); do
    pid=$(pid_of "replica-$i")
    if ! alive "$pid"; then state="down"
    elif ready "http://127.0.0.1:$((CLUSTER_PORT + i))/ready"; then state="ready"; up=$((up + 1))
    else state="not ready"; fi
    printf 'replica %-3s http://127.0.0.1:%-6s pid %-8s %-10s log %s\n' \
      "$i" "$((CLUSTER_PORT + i))" "${pid:--}" "$state" "$dir/replica-$i.log"
  done
  pid=$(pid_of nginx)
  if alive "$pid"; then state="up"; else state="down"; fi
  printf 'nginx       http://127.0.0.1:%-6s pid %-8s %-10s access log %s\n' \
    "$CLUSTER_PORT" "${pid:--}" "$state" "$dir/nginx-access.log"
  local https_state=up behind="http://127.0.0.1:$CLUSTER_PORT"
  if [ -n "${CLUSTER_HTTPS_PORT:-}" ]; then
    if ! alive "$pid"; then https_state="down"
    elif ! ready "https://127.0.0.1:$CLUSTER_HTTPS_PORT/ready" --cacert "$dir/nginx/ca.pem"; then
      https_state="not ready"
    fi
    printf 'nginx       https://127.0.0.1:%-5s pid %-8s %-10s CA %s\n' \
      "$CLUSTER_HTTPS_PORT" "${pid:--}" "$https_state" "$dir/nginx/ca.pem"
    behind="$behind and https://127.0.0.1:$CLUSTER_HTTPS_PORT"
  fi
  say "$up of $REPLICAS replicas ready behind $behind"
  [ "$state" = up ] && [ "$https_state" = up ] && [ "$up" -eq "$REPLICAS" ]
}

replica_index() { # index
  load_state
  [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] && [ "$1" -le "$REPLICAS" ] ||
    die "no replica '${1:-}': the cluster has replicas 1 to $REPLICAS"
}

cmd_kill() {
  replica_index "${1:-}"
  local pid
  pid=$(pid_of "replica-$1")
  alive "$pid" || die "replica $1 is not running"
  kill -KILL "$pid"
  while alive "$pid"; do sleep 0.05; done
  say "replica $1 (pid $pid) killed with SIGKILL"
}

cmd_restart() {
  replica_index "${1:-}"
  start_replica "$1"
  say "replica $1 is ready again (pid $(pid_of "replica-$1"))"
}

cmd_stop() {
  load_state
  local pids=() i pid
  for i in $(seq 1 "$REPLICAS"); do
    pid=$(pid_of "replica-$i")
    if alive "$pid"; then kill -TERM "$pid"; pids+=("$pid"); fi
  done
  pid=$(pid_of nginx)
  if alive "$pid"; then kill -QUIT "$pid"; pids+=("$pid"); fi
  # Replicas finish their deliveries in flight (delivery.shutdown_grace_seconds) first.
  for _ in $(seq 1 300); do
    local left=0
    for pid in "${pids[@]}"; do alive "$pid" && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do alive "$pid" && kill -KILL "$pid"; done
  rm -f "$dir"/*.pid
  say "stopped (logs stay in $dir)"
}

case "${1:-}" in
  start) cmd_start "${2:-}" ;;
  status) cmd_status ;;
  kill) cmd_kill "${2:-}" ;;
  restart) cmd_restart "${2:-}" ;;
  stop) cmd_stop ;;
  *) die "usage: scripts/cluster.sh start N | status | kill I | restart I | stop" ;;
esac
