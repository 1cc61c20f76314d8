#!/usr/bin/env bash
# The loopback DoT rig: Unbound serving plain DNS and DNS over TLS on free 127.0.0.1 ports, with a
# generated CA and local data only. It never recurses to the internet: every name outside the local
# zones gets an authoritative NXDOMAIN from the root zone below.
#
#   scripts/unbound-rig.sh start DIR [--refuse-outside-zone]
#                                      generate certificates and config in DIR, start Unbound, wait until
#                                      it answers, then print KEY=VALUE lines (also saved as DIR/rig.env).
#                                      With --refuse-outside-zone it answers REFUSED to every name outside
#                                      test. (the root included), as an authoritative or filtering server
#                                      does.
#   scripts/unbound-rig.sh stop DIR    stop the Unbound started in DIR, by PID
#   scripts/unbound-rig.sh restart DIR start the stopped Unbound of DIR again, on the same ports
#
# A CA already in DIR (ca.key and ca.pem, copied from another rig) is reused, so several rigs can share
# one trust root.
#
# DIR/rig.env holds: RIG_PID, RIG_DNS_PORT (plain UDP/TCP), RIG_DOT_PORT (TLS), RIG_CA (PEM CA file),
# RIG_NAME (the certificate's name, dns.test; the certificate also covers IP 127.0.0.1) and
# RIG_SPKI_SHA256 (the server key's SPKI pin, base64).
set -euo pipefail

cmd=${1:-}; dir=${2:-}; mode=${3:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|restart DIR [--refuse-outside-zone]" >&2; exit 64; }
[ -z "$mode" ] || [ "$mode" = --refuse-outside-zone ] || { echo "unbound-rig: unknown option $mode" >&2; exit 64; }

stop() {
  if [ -f "$dir/unbound.pid" ]; then
    pid=$(cat "$dir/unbound.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/unbound.pid"
  fi
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || [ "$cmd" = restart ] || { echo "usage: $0 start|stop|restart DIR" >&2; exit 64; }

for tool in unbound certtool python3; do
  command -v "$tool" >/dev/null || { echo "unbound-rig: $tool is not installed (apt-get install unbound gnutls-bin python3)" >&2; exit 69; }
done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

wait_ready() { # dns_port dot_port
  for _ in $(seq 100); do
    if [ -s "$dir/unbound.pid" ] && python3 - "$1" "$2" <<'PY'
import socket, sys
q = bytes.fromhex("abcd01000001000000000000") + b"\x01a\x04test\x00" + b"\x00\x01\x00\x01"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
s.sendto(q, ("127.0.0.1", int(sys.argv[1])))
assert s.recv(4096)[:2] == b"\xab\xcd"
socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=0.2).close()
PY
    then return 0; fi
    sleep 0.1
  done
  echo "unbound-rig: Unbound did not become ready; log follows" >&2
  cat "$dir/unbound.log" >&2 || true
  stop
  return 1
}

if [ "$cmd" = restart ]; then
  [ -f "$dir/rig.env" ] || { echo "unbound-rig: nothing to restart in $dir" >&2; exit 64; }
  stop
  . "$dir/rig.env"
  unbound -c "$dir/unbound.conf" </dev/null >/dev/null 2>&1
  wait_ready "$RIG_DNS_PORT" "$RIG_DOT_PORT"
  sed -i "s/^RIG_PID=.*/RIG_PID=$(cat "$dir/unbound.pid")/" "$dir/rig.env"
  cat "$dir/rig.env"
  exit 0
fi

# Certificates: a CA (unless one was provided), and a server certificate for dns.test and 127.0.0.1,
# valid for ten years.
if [ ! -f "$dir/ca.pem" ]; then
  certtool --generate-privkey --key-type=ecdsa --outfile "$dir/ca.key" 2>/dev/null
  cat > "$dir/ca.tmpl" <<TMPL
cn = "dotproxy test CA"
ca
cert_signing_key
expiration_days = 3650
TMPL
  certtool --generate-self-signed --load-privkey "$dir/ca.key" --template "$dir/ca.tmpl" --outfile "$dir/ca.pem" 2>/dev/null
fi
if [ ! -f "$dir/server.pem" ]; then
  certtool --generate-privkey --key-type=ecdsa --outfile "$dir/server.key" 2>/dev/null
  cat > "$dir/server.tmpl" <<TMPL
cn = "dns.test"
dns_name = "dns.test"
ip_address = "127.0.0.1"
tls_www_server
signing_key
expiration_days = 3650
TMPL
  certtool --generate-certificate --load-privkey "$dir/server.key" --load-ca-certificate "$dir/ca.pem" \
    --load-ca-privkey "$dir/ca.key" --template "$dir/server.tmpl" --outfile "$dir/server.pem" 2>/dev/null
fi
pin=$(certtool --key-info --load-privkey "$dir/server.key" 2>/dev/null | awk '/Public Key PIN:/{getline; sub(/^[ \t]*pin-sha256:/,""); print; exit}')

# A port free for both TCP and UDP right now; Unbound binds both on each. Another process may still
# take it before Unbound does (tests start rigs in parallel), so the start below tries new ports.
free_port() { python3 -c '
import socket, sys
for _ in range(100):
    with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
        try: u.bind(("127.0.0.1", port))
        except OSError: continue
        print(port); break
else: sys.exit("unbound-rig: no port free for both TCP and UDP in 100 tries")'; }

# A TXT record over 1,232 octets: six strings of 250 octets.
big_txt=""
for i in 1 2 3 4 5 6; do big_txt+=" \"$(printf "%0250d" "$i")\""; done

if [ "$mode" = --refuse-outside-zone ]; then
  root_zone='  # Everything outside test. is refused, the root included.
  local-zone: "." refuse'
else
  root_zone='  # The root is a static local zone: nothing is ever looked up upstream.
  local-zone: "." static
  local-data: ". 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300"
  local-data: ". 3600 IN NS ns.test."'
fi

write_conf() {
cat > "$dir/unbound.conf" <<CONF
server:
  username: ""
  chroot: ""
  directory: "$dir"
  pidfile: "$dir/unbound.pid"
  use-syslog: no
  logfile: "$dir/unbound.log"
  verbosity: 1
  num-threads: 1
  interface: 127.0.0.1@$dns_port
  interface: 127.0.0.1@$dot_port
  tls-port: $dot_port
  tls-service-key: "$dir/server.key"
  tls-service-pem: "$dir/server.pem"
  do-ip6: no
  access-control: 127.0.0.0/8 allow
  incoming-num-tcp: 1024
  tcp-idle-timeout: 30000
  edns-tcp-keepalive: yes
  module-config: "iterator"
  qname-minimisation: no
  do-not-query-localhost: yes
$root_zone
  local-zone: "test." static
  local-data: "test. 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300"
  local-data: "test. 3600 IN NS ns.test."
  local-data: "ns.test. 3600 IN A 127.0.0.1"
  local-data: "dns.test. 60 IN A 127.0.0.1"
  local-data: "a.test. 300 IN A 192.0.2.1"
  local-data: "a.test. 300 IN A 192.0.2.2"
  local-data: "a.test. 300 IN AAAA 2001:db8::1"
  local-data: "www.test. 300 IN CNAME a.test."
  local-data: "mail.test. 300 IN MX 10 a.test."
  local-data: 'txt.test. 300 IN TXT "first string" "second string" "v=spf1 -all"'
  local-data: 'big.test. 300 IN TXT$big_txt'
  local-data: "_dns._tcp.test. 300 IN SRV 10 5 853 a.test."
  local-data: 'caa.test. 300 IN CAA 0 issue "ca.example"'
  local-data: "svc.test. 300 IN HTTPS 1 . alpn=h2,h3"
  local-data: "unknown.test. 300 IN TYPE65280 \\# 4 01020304"
  local-data: "ptr.test. 300 IN PTR a.test."
  # Every name below unique.test answers 192.0.2.99, for cache-miss load with unique names.
  local-zone: "unique.test." redirect
  local-data: "unique.test. 60 IN A 192.0.2.99"
# unbound-control -c $dir/unbound.conf stats_noreset: what the upstream was asked (the Redis tests
# count its queries).
remote-control:
  control-enable: yes
  control-interface: "$dir/control.sock"
  control-use-cert: no
CONF
}

for attempt in 1 2 3 4 5; do
  dns_port=$(free_port); dot_port=$(free_port)
  while [ "$dot_port" = "$dns_port" ]; do dot_port=$(free_port); done
  write_conf
  unbound-checkconf "$dir/unbound.conf" >/dev/null
  # Unbound daemonizes; it must not inherit our stdout, or a caller reading it to EOF would wait
  # forever. Then wait until both ports answer (it writes its PID file once it has bound).
  if unbound -c "$dir/unbound.conf" </dev/null >/dev/null 2>"$dir/unbound.start.err" && wait_ready "$dns_port" "$dot_port"; then
    break
  fi
  if [ "$attempt" = 5 ]; then
    # A start that failed left its error here; one that never answered printed its log above.
    if [ -s "$dir/unbound.start.err" ]; then
      echo "unbound-rig: Unbound did not start in 5 attempts on free ports; its last error:" >&2
      cat "$dir/unbound.start.err" >&2
    else
      echo "unbound-rig: the last of 5 Unbound starts on free ports never answered; its log is above" >&2
    fi
    exit 1
  fi
done
cat > "$dir/rig.env" <<ENV
RIG_PID=$(cat "$dir/unbound.pid")
RIG_DNS_PORT=$dns_port
RIG_DOT_PORT=$dot_port
RIG_CA=$dir/ca.pem
RIG_NAME=dns.test
RIG_SPKI_SHA256=$pin
ENV
cat "$dir/rig.env"
