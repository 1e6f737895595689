#!/usr/bin/env bash
# Makes sure Redis and PostgreSQL answer on loopback, that libpq is there to build against,
# that Nginx is installed (the local cluster), and that the dashboard's browser test has
# Chromium and playwright-core. Already there:
# nothing is touched. Missing: installs the Debian/Ubuntu packages (and the npm package) and
# starts the services for development (PostgreSQL gets trust auth on loopback: dev only).
set -euo pipefail

say() { printf 'dev-services: %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found: install $* yourself"; exit 1
  fi
  if [ "$updated" = 0 ]; then $SUDO apt-get update -qq; updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  say "$what did not come up"; exit 1
}

# libpq for diesel's PostgreSQL backend.
if [ ! -e /usr/include/postgresql/libpq-fe.h ]; then
  say "installing libpq-dev"; apt_install libpq-dev pkg-config
fi

# openssl makes the test certificates of the HTTPS front door (tests/tls.rs, CLUSTER_TLS=1).
if ! command -v openssl >/dev/null 2>&1; then say "installing openssl"; apt_install openssl; fi

# Redis on 127.0.0.1:6379.
redis_ping() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
if ! command -v redis-cli >/dev/null 2>&1 || ! redis_ping 2>/dev/null; then
  if ! command -v redis-server >/dev/null 2>&1; then say "installing redis"; apt_install redis-server; fi
  if ! redis_ping 2>/dev/null; then
    say "starting redis on 127.0.0.1:6379"
    mkdir -p /tmp/hookgate-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/hookgate-redis --logfile /tmp/hookgate-redis/redis.log
    wait_for redis redis_ping
  fi
fi

# PostgreSQL on 127.0.0.1:5432, user postgres without a password.
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q; }
if ! command -v pg_isready >/dev/null 2>&1 || ! pg_up 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then say "installing postgresql"; apt_install postgresql; fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    say "allowing password-less connections on loopback (development only)"
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  say "starting postgresql $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for postgresql pg_up
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  say "PostgreSQL is up but user postgres cannot log in from 127.0.0.1 without a password;"
  say "set DATABASE_URL (and TEST_POSTGRES_URL for the tests) to a URL that can"
fi
# Nginx: the front door of scripts/cluster.sh and of the chaos test.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then say "installing nginx"; apt_install nginx; fi
# The dashboard's browser test: Debian's Chromium, driven by playwright-core (no download).
if ! command -v chromium >/dev/null 2>&1; then say "installing chromium"; apt_install chromium; fi
if ! command -v node >/dev/null 2>&1; then say "installing nodejs"; apt_install nodejs npm; fi
browser_dir="$(dirname "$0")/../tests/browser"
if [ ! -d "$browser_dir/node_modules/playwright-core" ]; then
  say "installing playwright-core for the browser test"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
say "redis, postgresql, nginx and the browser-test tools are ready"
