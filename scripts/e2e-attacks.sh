#!/usr/bin/env bash
# Hostile clients against the built proxy, with its default settings, in front of a loopback Unbound:
# a TCP client that never reads its replies, slowloris from 20 addresses, and length prefixes of
# 65,535 followed by a trickle (scripts/tcp_attacks.py, which prints each attack's figures as JSON),
# then hostile DNS-over-TLS clients (scripts/tls_attacks.py: silent, stopped mid-handshake, plain DNS,
# garbage records, 5,000 connections from one address, a slow reader), then many TCP connections
# against a low descriptor limit (its descriptors attack). Passes when
# memory stays bounded, the proxy closes what it must, and legitimate clients are served throughout.
#   scripts/e2e-attacks.sh [path/to/dotproxy]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/dotproxy}
for tool in python3 dig prlimit "$binary"; do command -v "$tool" >/dev/null || { echo "e2e-attacks: $tool is missing" >&2; exit 69; }; done
work=$(mktemp -d)
proxy_pid=""
cleanup() {
  [ -z "$proxy_pid" ] || kill "$proxy_pid" 2>/dev/null || true
  scripts/unbound-rig.sh stop "$work/rig" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
scripts/unbound-rig.sh start "$work/rig" >/dev/null
. "$work/rig/rig.env"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tls_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tls_metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$binary" --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" --listen "127.0.0.1:$port" --log-level notice \
  --listen-tls "127.0.0.1:$tls_port" --tls-cert "$work/rig/server.pem" --tls-key "$work/rig/server.key" \
  --metrics-listen "127.0.0.1:$tls_metrics_port" > "$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do dig @127.0.0.1 -p "$port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done
status=0
python3 scripts/tcp_attacks.py --port "$port" --pid "$proxy_pid" || status=1
python3 scripts/tls_attacks.py --port "$tls_port" --pid "$proxy_pid" --ca "$RIG_CA" --name "$RIG_NAME" \
  --metrics-port "$tls_metrics_port" --log "$work/proxy.log" || status=1
kill -0 "$proxy_pid" 2>/dev/null || { echo "FAIL dotproxy died"; cat "$work/proxy.log"; exit 1; }
kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""

# The same proxy started as from a shell with the usual 1,024 descriptors, soft and hard.
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
prlimit --nofile=1024:1024 "$binary" --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" --listen "127.0.0.1:$port" \
  --metrics-listen "127.0.0.1:$metrics_port" --log-level notice > "$work/proxy-fd.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do dig @127.0.0.1 -p "$port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done
python3 scripts/tcp_attacks.py --attacks descriptors --port "$port" --metrics-port "$metrics_port" --pid "$proxy_pid" || status=1
kill -0 "$proxy_pid" 2>/dev/null || { echo "FAIL dotproxy died"; cat "$work/proxy-fd.log"; exit 1; }
[ "$status" = 0 ] || { echo "FAIL an attack broke its bound"; tail -20 "$work/proxy.log" "$work/proxy-fd.log"; exit 1; }
echo "ok   every attack held"
