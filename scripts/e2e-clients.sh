#!/usr/bin/env bash
# End to end with real clients: dig and kdig -> dotproxy (the built binary) -> Unbound over DoT, all on
# loopback. Checks answers over UDP, TCP and TLS (kdig, gnutls-cli, Unbound forwarding over TLS, Stubby), a padded query, truncation of a large reply, NXDOMAIN, a FORMERR for a
# malformed packet, BADVERS for an unknown EDNS version, the metrics endpoint (checked by promtool), the
# four examples, a start from a configuration file (and check-config) with a blocklist and local names, that SIGHUP, SIGUSR1 and SIGUSR2 leave dotproxy running, and that SIGTERM makes it exit 0. Run as root, it runs dotproxy as user 65534
# with no capabilities. Fails loudly if a tool is missing.
#   scripts/e2e-clients.sh [path/to/dotproxy]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/dotproxy}
bin_dir=$(dirname "$binary")
for tool in dig kdig gnutls-cli unbound stubby python3 promtool "$binary" "$bin_dir/resolve" "$bin_dir/custom-cache" "$bin_dir/embedded-server" "$bin_dir/type-filter"; do command -v "$tool" >/dev/null || { echo "e2e: $tool is missing" >&2; exit 69; }; done
work=$(mktemp -d)
proxy_pid=""
example_pids=()
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  for pid in "${example_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/unbound-rig.sh stop "$work/rig" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
scripts/unbound-rig.sh start "$work/rig" >/dev/null
. "$work/rig/rig.env"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
tls_port=$(free_port)
metrics_port=$(free_port)
# The TLS listener serves the rig's certificate (dns.test and 127.0.0.1, from the rig's CA), copied where
# the unprivileged user can read it.
cp "$work/rig/server.pem" "$work/listener.pem"; cp "$work/rig/server.key" "$work/listener.key"
chmod 644 "$work/listener.pem" "$work/listener.key"
# dotproxy runs as it is deployed, as an unprivileged user (the container's 65534, the systemd unit's
# DynamicUser), so that a socket option or a file that needs root fails here rather than in production.
proxy=("$binary")
if [ "$(id -u)" = 0 ]; then
  chmod 755 "$work"
  install -m 0755 "$binary" "$work/dotproxy"
  proxy=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$work/dotproxy")
fi
"${proxy[@]}" --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" --pin-sha256 "$RIG_SPKI_SHA256" \
  --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" --log-level warning \
  --listen-tls "127.0.0.1:$tls_port" --tls-cert "$work/listener.pem" --tls-key "$work/listener.key" > "$work/proxy.log" 2>&1 &
proxy_pid=$!
cache_port=$(free_port)
"$bin_dir/custom-cache" --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" \
  --port "$cache_port" > "$work/custom-cache.log" 2>&1 &
example_pids+=($!)
filter_port=$(free_port)
"$bin_dir/type-filter" --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" \
  --port "$filter_port" --refuse ANY > "$work/type-filter.log" 2>&1 &
example_pids+=($!)
embedded_port=$(free_port)
"$bin_dir/embedded-server" --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" \
  --port "$embedded_port" > "$work/embedded-server.log" 2>&1 &
example_pids+=($!)
for listener in "$port" "$cache_port" "$embedded_port" "$filter_port"; do
  for _ in $(seq 100); do dig @127.0.0.1 -p "$listener" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done
done
http_get() { python3 -c "
import sys, urllib.request, urllib.error
try: r = urllib.request.urlopen('http://127.0.0.1:$metrics_port$1', timeout=3); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e: print(e.code)"; }

# Prints a.test's address once the resolver on PORT answers with one: up to TRIES attempts 0.1 s apart
# (dig prints "connection refused" on standard output, so only an address counts), then LOG's tail.
address_once_up() { # port tries [log]
  for _ in $(seq "$2"); do
    dig @127.0.0.1 -p "$1" a.test +short +time=1 +tries=1 2>/dev/null | grep -E '^[0-9.]+$' && return 0
    sleep 0.1
  done
  [ -n "${3:-}" ] && tail -5 "$3"
  return 1
}

failures=0
check() { # description, expected (grep -E pattern), command...
  local description=$1 pattern=$2; shift 2
  local output; output=$("$@" 2>&1 || true)
  # (A here-string, not a pipe: with pipefail, grep -q leaving early can fail the echo with SIGPIPE.)
  if grep -qE "$pattern" <<< "$output"; then echo "ok   $description"; else echo "FAIL $description"; echo "$output" | sed 's/^/     /'; failures=$((failures+1)); fi
}
check "dig A over UDP" "^192\.0\.2\.1$" dig @127.0.0.1 -p "$port" a.test +short
check "dig query padded to 468 octets over UDP" "^192\.0\.2\.99$" dig @127.0.0.1 -p "$port" padded.unique.test +padding=468 +short
check "kdig A over TCP" "^192\.0\.2\.2$" kdig @127.0.0.1 -p "$port" +tcp a.test +short
check "dig keeps the client's case" "^A\.TeSt\.\s" dig @127.0.0.1 -p "$port" A.TeSt +noall +answer
check "dig NXDOMAIN with SOA" "status: NXDOMAIN" dig @127.0.0.1 -p "$port" nope.test
check "large TXT over UDP without EDNS is truncated" "flags: qr tc" dig @127.0.0.1 -p "$port" big.test TXT +noedns +ignore
check "large TXT over UDP with EDNS 4096 is truncated at 1,232 octets" "flags: qr tc" dig @127.0.0.1 -p "$port" big.test TXT +bufsize=4096 +ignore
check "large TXT over TCP is whole" "MSG SIZE  rcvd: 15[0-9][0-9]" dig @127.0.0.1 -p "$port" big.test TXT +tcp
check "kdig HTTPS record" "alpn" kdig @127.0.0.1 -p "$port" svc.test HTTPS +short
check "malformed packet gets FORMERR" "rcode=1" python3 -c "
import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(bytes.fromhex('123401000001000000000000c00c00010001'), ('127.0.0.1', $port))
print('rcode=%d' % (s.recv(512)[3] & 15))"
check "dig EDNS version 1 gets BADVERS" "status: BADVERS" dig @127.0.0.1 -p "$port" a.test +edns=1 +noednsnegotiation
check "still answering after bad input" "^192\.0\.2\." dig @127.0.0.1 -p "$port" a.test +short
check "/metrics counts BADVERS by its extended code" '^dotproxy_responses_total\{rcode="BADVERS"\} 1' http_get /metrics
check "/metrics counts the queries" '^dotproxy_queries_total\{transport="udp",qtype="A"\} [1-9]' http_get /metrics
check "/metrics passes promtool check metrics" "^ok$" bash -c "$(declare -f http_get); metrics_port=$metrics_port; http_get /metrics | tail -n +2 | promtool check metrics && echo ok"
check "/ready is 200 with the upstream up" "^200$" http_get /ready
check "custom-cache example answers, then from its cache" "^A\.TeSt\.\s+29[0-9]\s" bash -c \
  "dig @127.0.0.1 -p $cache_port a.test +short >/dev/null; sleep 1.1; dig @127.0.0.1 -p $cache_port A.TeSt +noall +answer"
check "resolve example answers over DoT" "^a\.test\.\s+300\s+IN\s+A\s+192\.0\.2\." "$bin_dir/resolve" a.test A \
  --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA"
check "type-filter example refuses ANY and answers A" "status: REFUSED.*192\.0\.2\." bash -c \
  "{ dig @127.0.0.1 -p $filter_port a.test ANY | grep status; dig @127.0.0.1 -p $filter_port a.test +short; } | tr '\n' ' '"
check "embedded-server example answers over TCP" "^192\.0\.2\.[0-9]+$" dig @127.0.0.1 -p "$embedded_port" a.test +tcp +short
for pid in "${example_pids[@]}"; do kill -INT "$pid"; done
for pid in "${example_pids[@]}"; do wait "$pid" 2>/dev/null || { echo "FAIL an example exited with an error"; failures=$((failures+1)); }; done
example_pids=()

# DNS over TLS to the proxy: kdig, gnutls-cli, Unbound forwarding over TLS and Stubby, each verifying
# the certificate against the rig's CA.
tls_kdig=(kdig @127.0.0.1 -p "$tls_port" +tls-ca="$RIG_CA" +tls-hostname="$RIG_NAME")
check "kdig over TLS, name verified, SNI sent" "^192\.0\.2\.1$" "${tls_kdig[@]}" +tls-sni="$RIG_NAME" a.test +short
check "kdig over TLS, name verified, no SNI" "^192\.0\.2\.1$" "${tls_kdig[@]}" +notls-sni a.test +short
check "kdig over TLS, a padded query gets a reply padded to 468 octets" "Received 468 B" \
  "${tls_kdig[@]}" +padding a.test
check "kdig +tls +keepopen: three queries (four records) on one TLS connection" "^4 answers, 1 connection$" bash -c "
  before=\$($(declare -f http_get); metrics_port=$metrics_port; http_get /metrics | grep -E '^dotproxy_client_tls_connections_accepted_total ' | cut -d' ' -f2)
  answers=\$(kdig @127.0.0.1 -p $tls_port +tls +keepopen a.test A +short www.test CNAME +short mail.test MX +short | grep -c .)
  after=\$($(declare -f http_get); metrics_port=$metrics_port; http_get /metrics | grep -E '^dotproxy_client_tls_connections_accepted_total ' | cut -d' ' -f2)
  echo \"\$answers answers, \$((after - before)) connection\""
check "gnutls-cli verifies the name, agrees ALPN dot, and gets the answer" "Application protocol: dot.*reply id=abcd rcode=0 answers=2" bash -c "
  { python3 -c 'import struct,sys; q=bytes.fromhex(\"abcd01000001000000000000016104746573740000010001\"); sys.stdout.buffer.write(struct.pack(\">H\",len(q))+q)'; sleep 1; } |
    timeout 10 gnutls-cli --x509cafile='$RIG_CA' --verify-hostname='$RIG_NAME' --alpn=dot --port=$tls_port 127.0.0.1 > '$work/gnutls-cli.out' 2>&1
  grep -a 'Application protocol' '$work/gnutls-cli.out' | tr '\\n' ' '
  python3 -c '
import sys
data = open(\"$work/gnutls-cli.out\", \"rb\").read()
m = data[data.find(b\"Simple Client Mode\"):]
m = m[m.find(bytes.fromhex(\"abcd\")):]
print(\"reply id=%s rcode=%d answers=%d\" % (m[:2].hex(), m[3] & 15, int.from_bytes(m[6:8], \"big\")))' | tr '\n' ' '"
forwarder_port=$(free_port)
mkdir -p "$work/forwarder"
cat > "$work/forwarder/unbound.conf" <<CONF
server:
  username: ""
  chroot: ""
  directory: "$work/forwarder"
  pidfile: "$work/forwarder/unbound.pid"
  use-syslog: no
  logfile: "$work/forwarder/unbound.log"
  num-threads: 1
  interface: 127.0.0.1@$forwarder_port
  do-ip6: no
  do-not-query-localhost: no
  module-config: "iterator"
  # Unbound answers test. itself (RFC 6761) unless told not to.
  local-zone: "test." nodefault
  tls-cert-bundle: "$RIG_CA"
forward-zone:
  name: "."
  forward-tls-upstream: yes
  forward-addr: 127.0.0.1@$tls_port#$RIG_NAME
CONF
unbound -c "$work/forwarder/unbound.conf"
check "Unbound forwarding over TLS to the proxy, certificate verified" "^192\.0\.2\.1$" address_once_up "$forwarder_port" 50
kill "$(cat "$work/forwarder/unbound.pid")" 2>/dev/null || true
stubby_port=$(free_port)
cat > "$work/stubby.yml" <<YAML
resolution_type: GETDNS_RESOLUTION_STUB
dns_transport_list: [GETDNS_TRANSPORT_TLS]
tls_authentication: GETDNS_AUTHENTICATION_REQUIRED
tls_query_padding_blocksize: 128
tls_ca_file: "$RIG_CA"
idle_timeout: 5000
round_robin_upstreams: 0
listen_addresses: [127.0.0.1@$stubby_port]
upstream_recursive_servers:
  - address_data: 127.0.0.1
    tls_port: $tls_port
    tls_auth_name: "$RIG_NAME"
YAML
stubby -C "$work/stubby.yml" > "$work/stubby.log" 2>&1 &
example_pids+=($!)
# Stubby may take seconds to listen on a loaded machine: up to 20 s.
check "Stubby with strict authentication through the proxy" "^192\.0\.2\.1$" address_once_up "$stubby_port" 200 "$work/stubby.log"
kill "${example_pids[@]}" 2>/dev/null || true; example_pids=()
check "plain DNS sent to the TLS port gets no answer and is counted" 'reason="not_tls"\} [1-9]' bash -c "
  dig @127.0.0.1 -p $tls_port +tcp +time=2 +tries=1 a.test >/dev/null 2>&1
  $(declare -f http_get); metrics_port=$metrics_port; http_get /metrics | grep dotproxy_client_tls_handshake_failures_total"
check "/metrics counts TLS handshakes and TLS queries" 'client_tls_handshakes_total\{version="TLS1.3",resumed="false"\} [1-9] .*transport="tls",qtype="A"\} [1-9]' bash -c "
  $(declare -f http_get); metrics_port=$metrics_port; http_get /metrics > '$work/metrics.txt'
  grep -E '^dotproxy_client_tls_handshakes_total' '$work/metrics.txt' | tr '\n' ' '; grep -E 'transport=\"tls\",qtype=\"A\"' '$work/metrics.txt'"

check "SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored" "^192\.0\.2\." bash -c \
  "kill -HUP $proxy_pid; kill -USR1 $proxy_pid; kill -USR2 $proxy_pid; sleep 0.3; kill -0 $proxy_pid && dig @127.0.0.1 -p $port a.test +short"
kill -TERM "$proxy_pid"
status=0; wait "$proxy_pid" || status=$?
proxy_pid=""
if [ "$status" = 0 ]; then echo "ok   SIGTERM exits 0"; else echo "FAIL SIGTERM exit status $status"; cat "$work/proxy.log"; failures=$((failures+1)); fi

# The same proxy from a configuration file alone: the upstream under its own name, with its own pin.
file_port=$(free_port)
file_metrics_port=$(free_port)
cat > "$work/dotproxy.yaml" <<YAML
listen: ["127.0.0.1:$file_port"]
upstreams:
  rig:
    address: "127.0.0.1:$RIG_DOT_PORT"
    auth-name: $RIG_NAME
    ca-file: $RIG_CA
    pin-sha256: ["$RIG_SPKI_SHA256"]
cache: {size: 100}
log: {level: warning}
metrics: {listen: "127.0.0.1:$file_metrics_port"}
filter: {blocklists: ["$work/ads.txt"], local-records: "$work/local.txt"}
YAML
printf '0.0.0.0 ads.test\n||tracker.test^\n' > "$work/ads.txt"
printf 'zone lan\n192.168.1.1 router.lan\n' > "$work/local.txt"
chmod 644 "$work/dotproxy.yaml" "$work/ads.txt" "$work/local.txt"
check "check-config accepts the file" "ok, 6 settings, 1 upstreams" "$binary" check-config "$work/dotproxy.yaml"
printf 'upstreams: {rig: {address: 127.0.0.1}}\ncache:\n  size: lots\n' > "$work/bad.yaml"
check "check-config refuses a bad file with its line, exit 78" "bad.yaml:3: cache.size: must be a whole number status=78" \
  bash -c "out=\$('$binary' check-config '$work/bad.yaml' 2>&1); echo \"\$out status=\$?\""
check "a bad file stops the start with exit 78" "bad.yaml:3: cache.size: must be a whole number status=78" \
  bash -c "out=\$('$binary' --config '$work/bad.yaml' 2>&1); echo \"\$out status=\$?\""
"${proxy[@]}" --config "$work/dotproxy.yaml" > "$work/proxy-file.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do dig @127.0.0.1 -p "$file_port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done
check "dig A through the proxy started from the file" "^192\.0\.2\.1$" dig @127.0.0.1 -p "$file_port" a.test +short
metrics_port=$file_metrics_port
check "a blocklisted name gets NXDOMAIN with EDE 15 (Blocked)" "status: NXDOMAIN.*EDE: 15" bash -c \
  "dig @127.0.0.1 -p $file_port www.tracker.test | tr '\n' ' '"
check "a local name is answered authoritatively, never forwarded" "flags: qr aa.*192\.168\.1\.1" bash -c \
  "dig @127.0.0.1 -p $file_port router.lan | tr '\n' ' '"
check "an unlisted name in a local zone is NXDOMAIN" "status: NXDOMAIN" dig @127.0.0.1 -p "$file_port" ghost.lan
check "/metrics names the upstream as the file does" '^dotproxy_upstream_queries_total\{upstream="rig"\} [1-9]' http_get /metrics
# A reload on SIGHUP: the new access list turns the client away; a broken file then changes nothing.
printf 'access: {allow: [10.0.0.0/8]}\n' >> "$work/dotproxy.yaml"
check "SIGHUP applies the file's new access list" "status: REFUSED" bash -c \
  "kill -HUP $proxy_pid; sleep 0.5; dig @127.0.0.1 -p $file_port a.test"
printf 'cache: {size: lots}\n' >> "$work/dotproxy.yaml"
check "a broken file at SIGHUP is logged with its line and changes nothing" "dotproxy.yaml:[0-9]+: cache.*status: REFUSED" bash -c \
  "kill -HUP $proxy_pid; sleep 0.5; { grep 'reload failed' '$work/proxy-file.log'; dig @127.0.0.1 -p $file_port a.test | grep status; } | tr '\n' ' '"
check "/metrics counts the reloads" 'dotproxy_config_reloads_total\{result="failure"\} 1' http_get /metrics
kill -TERM "$proxy_pid"; wait "$proxy_pid" || true
proxy_pid=""
total=44
echo "$((total - failures)) passed, $failures failed"
[ "$failures" = 0 ]
