#!/usr/bin/env bash
# Outage recovery with real servers: a paced UDP load of unique names (scripts/outage_load.py) ->
# dotproxy -> Unbound over DoT, with every upstream made to answer REFUSED outside its own zone (as an
# authoritative or filtering server does, so the default probe `. NS` is refused). Three cases:
#   pause     the only upstream is paused with SIGSTOP for 8 s, then resumed
#   restart   the only upstream is killed, and started again on the same ports 5 s later
#   two       both of two upstreams are paused for 8 s, then resumed
# Each passes when NOERROR answers return within 3 s of the resume and, from 3 s after it, at least
# 99% of queries get NOERROR. Prints each case's figures (JSON). Fails loudly if a tool is missing.
#   scripts/e2e-outage.sh [path/to/dotproxy] [rate]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/dotproxy}
rate=${2:-5000}
for tool in python3 dig "$binary"; do command -v "$tool" >/dev/null || { echo "e2e-outage: $tool is missing" >&2; exit 69; }; done
work=$(mktemp -d)
proxy_pid=""
cleanup() {
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  for rig in a b; do
    [ -f "$work/$rig/rig.env" ] && kill -CONT "$(. "$work/$rig/rig.env"; echo "$RIG_PID")" 2>/dev/null || true
    scripts/unbound-rig.sh stop "$work/$rig" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

scripts/unbound-rig.sh start "$work/a" --refuse-outside-zone >/dev/null
mkdir -p "$work/b" && cp "$work/a/ca.key" "$work/a/ca.pem" "$work/b/"
scripts/unbound-rig.sh start "$work/b" --refuse-outside-zone >/dev/null
upstream() { echo "127.0.0.1:$(. "$work/$1/rig.env"; echo "$RIG_DOT_PORT")#dns.test"; }
rig_pid() { . "$work/$1/rig.env"; echo "$RIG_PID"; }

# Starts dotproxy with its default settings but for the upstreams, the CA and the port.
start_proxy() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  args=()
  for rig in "$@"; do args+=(--upstream "$(upstream "$rig")"); done
  "$binary" "${args[@]}" --ca-file "$work/a/ca.pem" --listen "127.0.0.1:$port" --log-level notice > "$work/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 100); do dig @127.0.0.1 -p "$port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "e2e-outage: dotproxy did not answer; its log:" >&2; cat "$work/proxy.log" >&2; exit 1
}
stop_proxy() { kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""; }

failures=0
run_case() { # name seconds load-arguments...
  local name=$1 seconds=$2; shift 2
  if out=$(python3 scripts/outage_load.py --port "$port" --rate "$rate" --seconds "$seconds" "$@"); then
    echo "ok   $name: $out"
  else
    echo "FAIL $name: $out"; failures=$((failures + 1))
    sed 's/^/  proxy: /' "$work/proxy.log" | tail -20
  fi
}

a=$(rig_pid a); b=$(rig_pid b)
start_proxy a
run_case pause 18 --at 3 "kill -STOP $a" --at 11 "kill -CONT $a"
run_case restart 14 --at 3 "scripts/unbound-rig.sh stop $work/a" --at 8 "scripts/unbound-rig.sh restart $work/a"
stop_proxy
a=$(rig_pid a)
start_proxy a b
run_case two 18 --at 3 "kill -STOP $a $b" --at 11 "kill -CONT $a $b"
stop_proxy
[ "$failures" = 0 ] || exit 1
