# shellcheck shell=bash
# Shared by the scripts that run a throwaway gateway: its own Redis key prefix and database,
# a temporary folder, background processes, and removal of all of it on exit.
# Source it, then call `hg_setup NAME PORT...`.

hg_setup() { # name, ports that must be free
  local name=$1; shift
  run_id=$(date +%s)-$$
  prefix="hookgate-$name-$run_id"
  db="hookgate_${name}_${run_id//-/_}"
  pg=${HG_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
  redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
  workdir=$(mktemp -d)
  pids=()
  trap hg_cleanup EXIT
  local p
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "port $p is in use: stop what listens there or choose other ports" >&2
      exit 1
    fi
  done
}

hg_cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli -u "$redis_url" --scan --pattern "$prefix:*" | xargs -r -n 500 redis-cli -u "$redis_url" del >/dev/null || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$workdir"
}

hg_wait_for() { # url
  local _
  for _ in $(seq 1 100); do
    curl -sf "$1" >/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not answer" >&2
  exit 1
}

hg_config_head() { # port: the [server], [redis] and [database] sections of a throwaway gateway
  cat <<TOML
[server]
bind = "127.0.0.1:$1"
summary_interval_seconds = 3600
[redis]
url = "$redis_url"
key_prefix = "$prefix"
[database]
url = "$pg/$db"
TOML
}

hg_chatwoot_source() { # [destination URL]: the benchmarks' source, delivering there if given
  cat <<TOML
[[sources]]
name = "chatwoot"
kind = "chatwoot"
secrets = ["bench-secret"]
TOML
  if [ -n "${1:-}" ]; then
    cat <<TOML
[[sources.destinations]]
name = "sink"
url = "$1"
max_in_flight = 64
TOML
  fi
}

# Benchmarks' helpers.
field() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" <<<"$1"; } # "k=v k2=v2" line, key: the value
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }      # pid: CPU ticks used so far
cpu_pct() { echo $(( $1 * 100000 / $(getconf CLK_TCK) / $2 )); } # ticks, milliseconds: % of a core

# A throwaway certificate for Nginx's HTTPS (scripts/cluster.sh, scripts/check-deploy.sh):
# a private CA made for the occasion (FOLDER/ca.pem, for clients: `curl --cacert`; its key is
# not kept) and a certificate for the names signed by it, in the files nginx/https.conf reads
# (FOLDER/certs/fullchain.pem, FOLDER/certs/privkey.pem). A CA and a leaf rather than one
# self-signed certificate: TLS libraries such as rustls/webpki refuse a CA certificate
# presented as the server's own.
hg_tls_cert() { # folder, names (DNS names or IP addresses; the first is the subject)
  local out=$1 san="" name tmp
  shift
  for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:$name,"; else san+="DNS:$name,"; fi
  done
  tmp=$(mktemp -d)
  mkdir -p "$out/certs"
  # One && chain: `set -e` does not stop a subshell whose status is tested (|| below).
  (
    umask 077 &&
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 30 \
      -subj "/CN=hookgate throwaway CA" -keyout "$tmp/ca.key" -out "$out/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
      -subj "/CN=$1" -keyout "$out/certs/privkey.pem" -out "$tmp/leaf.csr" &&
    printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
      "${san%,}" >"$tmp/leaf.ext" &&
    openssl x509 -req -in "$tmp/leaf.csr" -CA "$out/ca.pem" -CAkey "$tmp/ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -days 30 -extfile "$tmp/leaf.ext" \
      -out "$out/certs/fullchain.pem" &&
    chmod 644 "$out/ca.pem" "$out/certs/fullchain.pem"
  ) >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; rm -rf "$tmp"; return 1; }
  rm -rf "$tmp"
}
