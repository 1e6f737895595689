#!/usr/bin/env bash
# Checks the deployment files without a Docker engine: `nginx -t` on the bundled Nginx config
# (with the local cluster's upstreams, and with compose's when this Nginx is recent enough
# for them), each time without a certificate (plain HTTP) and with one (HTTPS, a throwaway
# certificate made by openssl), as nginx/tls.sh switches it; and the compose file's syntax
# with `docker compose config`, by default and with the `sentinel` and `cluster` profiles.
# Installs Nginx and openssl, and fetches Debian's docker-compose into target/tools, when
# they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'check-deploy: %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian puts nginx in /usr/sbin, which is not on a normal user's PATH.
nginx=$(command -v nginx || command -v /usr/sbin/nginx || true)
if [ -z "$nginx" ]; then
  say "installing nginx"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
  nginx=$(command -v nginx || command -v /usr/sbin/nginx)
fi

if ! command -v openssl >/dev/null; then
  say "installing openssl"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi
# shellcheck source=SCRIPTDIR/lib.sh
. scripts/lib.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A throwaway certificate, in the files nginx/https.conf reads (beside nginx.conf).
hg_tls_cert "$work/with-cert" hooks.example.com

nginx_test() { # upstreams file, "with-cert" or "no-cert"
  local conf=$work/$2
  mkdir -p "$conf"
  cp nginx/nginx.conf nginx/server.conf nginx/https.conf "$conf/"
  cp "$1" "$conf/upstreams.conf"
  # As compose's nginx service does before Nginx starts.
  NGINX=$nginx sh nginx/tls.sh "$conf" 8443 443 >/dev/null
  if [ "$2" = with-cert ]; then
    grep -q 'include https.conf;' "$conf/tls.conf" || { say "tls.sh did not switch HTTPS on"; exit 1; }
  else
    ! grep -q 'include https.conf;' "$conf/tls.conf" || { say "tls.sh switched HTTPS on without a certificate"; exit 1; }
  fi
  "$nginx" -t -q -e stderr -p "$conf" -c "$conf/nginx.conf" -g "pid $conf/nginx.pid;"
}

printf 'server 127.0.0.1:8081 max_fails=1 fail_timeout=2s;\nserver 127.0.0.1:8082 max_fails=1 fail_timeout=2s;\n' \
  >"$work/cluster-upstreams.conf"
for tls in no-cert with-cert; do
  nginx_test "$work/cluster-upstreams.conf" "$tls"
  say "nginx -t: nginx/nginx.conf with the local cluster's upstreams is valid ($tls)"
done

# `server ... resolve` in an upstream needs Nginx 1.27.3 (the compose image has 1.29).
version=$("$nginx" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
if [ "$(printf '%s\n1.27.3\n' "$version" | sort -V | head -n 1)" = "1.27.3" ]; then
  for tls in no-cert with-cert; do
    nginx_test nginx/upstreams.compose.conf "$tls"
    say "nginx -t: nginx/nginx.conf with upstreams.compose.conf is valid ($tls)"
  done
else
  say "nginx $version is older than 1.27.3: upstreams.compose.conf (server ... resolve) not checked here"
fi

# docker compose config parses and validates the file against the compose specification.
compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1 && docker-compose version 2>/dev/null | grep -q 'v2'; then
  compose=(docker-compose)
else
  tool=target/tools/docker-compose
  if [ ! -x "$tool" ]; then
    # Debian's docker-compose v2 is a static Go program: trixie's runs on older systems too.
    say "fetching Debian's docker-compose into $tool"
    mirror=http://deb.debian.org/debian
    curl -fsSL "$mirror/dists/trixie/main/binary-amd64/Packages.xz" -o "$work/Packages.xz"
    file=$(xz -dc "$work/Packages.xz" |
      awk '$0 == "Package: docker-compose" { p = 1 } p && /^Filename:/ && !f { f = $2 } END { print f }')
    [ -n "$file" ] || { say "docker-compose not found in Debian's index"; exit 1; }
    curl -fsSL "$mirror/$file" -o "$work/compose.deb"
    dpkg-deb -x "$work/compose.deb" "$work/compose"
    mkdir -p target/tools
    cp "$work/compose/usr/libexec/docker/cli-plugins/docker-compose" "$tool"
    chmod +x "$tool"
  fi
  compose=("$tool")
fi
# By default, and with each opt-in Redis profile (their services, and the api's dependencies
# on them, exist only then).
for profile in "" sentinel cluster; do
  "${compose[@]}" --env-file .env.example -f docker-compose.yml ${profile:+--profile "$profile"} config --quiet
  say "docker-compose.yml is valid${profile:+ with --profile $profile} ($("${compose[@]}" version --short 2>/dev/null || echo compose))"
done

# ---- Monitoring: docker-compose.yml's `monitoring` profile and monitoring/ -------------------
# The profile's compose syntax, then scripts/check-monitoring.py: `promtool check config`,
# `check rules` and `test rules` on monitoring/prometheus/ and monitoring/alerts.yml, the Grafana
# dashboard against Grafana's schema, and every query and rule against the metrics src/ exports.
# promtool comes from Debian's prometheus package, downloaded and unpacked into target/tools
# (installing the package would start a Prometheus server).
"${compose[@]}" --env-file .env.example -f docker-compose.yml --profile monitoring config --quiet
say "docker-compose.yml is valid with --profile monitoring"
promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool=target/tools/promtool
  if [ ! -x "$promtool" ]; then
    say "fetching promtool (Debian's prometheus package) into $promtool"
    mkdir -p "$work/prometheus" target/tools
    if ! (cd "$work/prometheus" && apt-get download -qq prometheus 2>/dev/null); then
      $SUDO apt-get update -qq
      (cd "$work/prometheus" && apt-get download -qq prometheus)
    fi
    dpkg-deb --fsys-tarfile "$work"/prometheus/prometheus_*.deb | tar -x -O ./usr/bin/promtool >"$promtool.part"
    chmod +x "$promtool.part"
    mv "$promtool.part" "$promtool"
  fi
fi
python3 -c 'import yaml, jsonschema' 2>/dev/null || python3 -m pip install -q pyyaml jsonschema
python3 scripts/check-monitoring.py --promtool "$promtool"
