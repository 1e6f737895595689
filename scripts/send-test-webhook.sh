#!/usr/bin/env bash
# Signs a webhook the way the source's sender would and posts it to a running gateway.
#   scripts/send-test-webhook.sh SOURCE [BODY_JSON] [extra hookgate send flags...]
# Uses ./target/release/hookgate when built, else cargo run. Config: --config, HOOKGATE_CONFIG,
# ./hookgate.toml, else hookgate.example.toml. Gateway URL: HOOKGATE_URL (default :8080).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: $0 SOURCE [BODY_JSON] [hookgate send flags...]" >&2
  exit 2
fi
source_name=$1; shift
args=(send --source "$source_name" --url "${HOOKGATE_URL:-http://127.0.0.1:8080}")
if [ $# -gt 0 ] && [ "${1:0:2}" != "--" ]; then args+=(--data "$1"); shift; fi
config=()
if [ -z "${HOOKGATE_CONFIG:-}" ] && [ ! -f hookgate.toml ]; then config=(--config hookgate.example.toml); fi
if [ -x target/release/hookgate ]; then
  exec target/release/hookgate "${config[@]}" "${args[@]}" "$@"
fi
exec cargo run --quiet --release -- "${config[@]}" "${args[@]}" "$@"
