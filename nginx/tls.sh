#!/bin/sh
# Switches Nginx's HTTPS on or off before Nginx starts, by writing tls.conf beside nginx.conf
# (which includes it): Nginx cannot test whether a file exists when it loads its config.
#
#   sh nginx/tls.sh CONF_DIR LISTEN PUBLIC_PORT
#
# CONF_DIR     the folder of nginx.conf, where tls.conf is written
# LISTEN       the HTTPS server's listen address: a port (8443) or address:port
# PUBLIC_PORT  the port senders reach HTTPS on, for the redirect of plain HTTP (443 is left
#              out of the URL)
#
# With CONF_DIR/certs/fullchain.pem and CONF_DIR/certs/privkey.pem there, tls.conf is an HTTPS
# server on LISTEN (HTTP/1.1 and HTTP/2, https.conf) and $https_url the request's URL on
# https://HOST:PUBLIC_PORT (nginx.conf redirects plain HTTP there, but /health, /ready and ACME
# challenges). Without them, plain HTTP only, as before HTTPS existed. One of the two alone is
# a mistake, refused. compose runs this at every start of the nginx service (docker-compose.yml)
# and scripts/cluster.sh at `start`: after the first certificate, restart Nginx; after a
# renewal (the same files), `nginx -s reload` is enough. NGINX (default nginx) is the binary
# whose version decides how HTTP/2 is switched on.
set -eu

usage() { echo "usage: tls.sh CONF_DIR LISTEN PUBLIC_PORT" >&2; exit 2; }
[ "$#" -eq 3 ] || usage
dir=$1 listen=$2 public_port=$3
echo "$listen" | grep -Eq '^([][0-9A-Za-z.:-]+:)?[0-9]+$' || usage
echo "$public_port" | grep -Eq '^[0-9]+$' || usage
[ -d "$dir" ] || { echo "tls.sh: no folder $dir" >&2; exit 1; }

cert=$dir/certs/fullchain.pem
key=$dir/certs/privkey.pem
out=$dir/tls.conf
if [ ! -e "$cert" ] && [ ! -e "$key" ]; then
  cat >"$out.tmp" <<CONF
# Written by tls.sh: no certificate in $dir/certs, so plain HTTP only (nothing redirected).
map \$host \$https_url {
    default "";
}
CONF
  mv "$out.tmp" "$out"
  echo "tls.sh: no certificate in $dir/certs: plain HTTP only"
  exit 0
fi
for f in "$cert" "$key"; do
  [ -r "$f" ] || { echo "tls.sh: $f is missing or unreadable: HTTPS needs both certs/fullchain.pem and certs/privkey.pem" >&2; exit 1; }
done

# `http2 on` exists from Nginx 1.25.1; older versions (Debian 12 has 1.22) say it on `listen`,
# which newer ones still accept with a deprecation warning at every start.
version=$("${NGINX:-nginx}" -v 2>&1 | sed -n 's|.*nginx/\([0-9][0-9.]*\).*|\1|p')
major=$(echo "$version" | cut -d. -f1) minor=$(echo "$version" | cut -d. -f2) patch=$(echo "$version" | cut -d. -f3)
if [ "${major:-0}" -gt 1 ] || { [ "${major:-0}" -eq 1 ] && { [ "${minor:-0}" -gt 25 ] ||
  { [ "${minor:-0}" -eq 25 ] && [ "${patch:-0}" -ge 1 ]; }; }; }; then
  listen_line="listen $listen ssl;
    http2 on;"
else
  listen_line="listen $listen ssl http2;"
fi
if [ "$public_port" = 443 ]; then authority="\$host"; else authority="\$host:$public_port"; fi
cat >"$out.tmp" <<CONF
# Written by tls.sh: $dir/certs has a certificate, so HTTPS on $listen (https.conf), and
# plain HTTP redirected to it (nginx.conf).
map \$host \$https_url {
    default "https://$authority\$request_uri";
}
server {
    $listen_line
    include https.conf;
}
CONF
mv "$out.tmp" "$out"
echo "tls.sh: certificate in $dir/certs: HTTPS on $listen, plain HTTP redirected to port $public_port"
