#!/usr/bin/env bash
# Checks the deployment files without a Docker engine: `nginx -t` on the bundled Nginx config
# (with the local cluster's upstreams, and with compose's when this Nginx is recent enough
# for them), and the compose file's syntax with `docker compose config`, by default and with
# the `sentinel` and `cluster` profiles. Installs Nginx, and fetches Debian's docker-compose
# into target/tools, when they are missing.
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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

nginx_test() { # upstreams file
  cp nginx/nginx.conf "$work/nginx.conf"
  cp "$1" "$work/upstreams.conf"
  "$nginx" -t -q -e stderr -p "$work" -c "$work/nginx.conf" -g "pid $work/nginx.pid;"
}

printf 'server 127.0.0.1:8081 max_fails=1 fail_timeout=2s;\nserver 127.0.0.1:8082 max_fails=1 fail_timeout=2s;\n' \
  >"$work/cluster-upstreams.conf"
nginx_test "$work/cluster-upstreams.conf"
say "nginx -t: nginx/nginx.conf with the local cluster's upstreams is valid"

# `server ... resolve` in an upstream needs Nginx 1.27.3 (the compose image has 1.29).
version=$("$nginx" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
if [ "$(printf '%s\n1.27.3\n' "$version" | sort -V | head -n 1)" = "1.27.3" ]; then
  nginx_test nginx/upstreams.compose.conf
  say "nginx -t: nginx/nginx.conf with upstreams.compose.conf is valid"
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
