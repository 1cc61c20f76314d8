#!/usr/bin/env bash
# End to end with real clients: dig and kdig -> dotproxy (the built binary) -> Unbound over DoT, all on
# loopback. Checks answers over UDP and TCP, truncation of a large reply, NXDOMAIN, a FORMERR for a
# malformed packet, and that SIGTERM makes dotproxy exit 0. Fails loudly if a tool is missing.
#   scripts/e2e-clients.sh [path/to/dotproxy]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/dotproxy}
for tool in dig kdig python3 "$binary"; do command -v "$tool" >/dev/null || { echo "e2e: $tool is missing" >&2; exit 69; }; done
work=$(mktemp -d)
proxy_pid=""
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  scripts/unbound-rig.sh stop "$work/rig" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
scripts/unbound-rig.sh start "$work/rig" >/dev/null
. "$work/rig/rig.env"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$binary" --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" --pin-sha256 "$RIG_SPKI_SHA256" \
  --listen "127.0.0.1:$port" --log-level warning > "$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do dig @127.0.0.1 -p "$port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done

failures=0
check() { # description, expected (grep -E pattern), command...
  local description=$1 pattern=$2; shift 2
  local output; output=$("$@" 2>&1 || true)
  if echo "$output" | grep -qE "$pattern"; then echo "ok   $description"; else echo "FAIL $description"; echo "$output" | sed 's/^/     /'; failures=$((failures+1)); fi
}
check "dig A over UDP" "^192\.0\.2\.1$" dig @127.0.0.1 -p "$port" a.test +short
check "kdig A over TCP" "^192\.0\.2\.2$" kdig @127.0.0.1 -p "$port" +tcp a.test +short
check "dig keeps the client's case" "^A\.TeSt\.\s" dig @127.0.0.1 -p "$port" A.TeSt +noall +answer
check "dig NXDOMAIN with SOA" "status: NXDOMAIN" dig @127.0.0.1 -p "$port" nope.test
check "large TXT over UDP without EDNS is truncated" "flags: qr tc" dig @127.0.0.1 -p "$port" big.test TXT +noedns +ignore
check "large TXT over TCP is whole" "MSG SIZE  rcvd: 15[0-9][0-9]" dig @127.0.0.1 -p "$port" big.test TXT +tcp
check "kdig HTTPS record" "alpn" kdig @127.0.0.1 -p "$port" svc.test HTTPS +short
check "malformed packet gets FORMERR" "rcode=1" python3 -c "
import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(bytes.fromhex('123401000001000000000000c00c00010001'), ('127.0.0.1', $port))
print('rcode=%d' % (s.recv(512)[3] & 15))"
check "still answering after bad input" "^192\.0\.2\." dig @127.0.0.1 -p "$port" a.test +short

kill -TERM "$proxy_pid"
status=0; wait "$proxy_pid" || status=$?
proxy_pid=""
if [ "$status" = 0 ]; then echo "ok   SIGTERM exits 0"; else echo "FAIL SIGTERM exit status $status"; cat "$work/proxy.log"; failures=$((failures+1)); fi
total=10
echo "$((total - failures)) passed, $failures failed"
[ "$failures" = 0 ]
