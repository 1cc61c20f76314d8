#!/usr/bin/env bash
# Reloads under load: dnsperf -> dotproxy (started from a configuration file) -> two Unbound DoT
# upstreams on loopback. While dnsperf sends a fixed rate of unique names, dotproxy is reloaded 50 times
# (SIGHUP): valid files that swap the upstream and change the rate limit, alternating with broken
# files (a typo, a wrong type, a bad address). Passes when no query is lost or answered SERVFAIL, every
# valid file was applied and every broken one refused, and after a broken file the upstream in use did
# not change. Prints the counts. Fails loudly if a tool is missing.
#   scripts/e2e-reload.sh [path/to/dotproxy]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/dotproxy}
rate=2000 seconds=16 reloads=50
for tool in dnsperf dig python3 "$binary"; do command -v "$tool" >/dev/null || { echo "e2e-reload: $tool is missing" >&2; exit 69; }; done
. scripts/lib/two-upstreams.sh
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)

# Two valid files, each with one upstream and its own rate limit (far above the load). The file
# dotproxy reads is replaced whole (mv), as a deploy or a ConfigMap does.
valid() { # name port qps
  cat <<YAML
listen: ["127.0.0.1:$port"]
upstreams:
  $1: {address: "127.0.0.1:$2", auth-name: dns.test}
tls: {ca-file: "$work/a/ca.pem"}
cache: {size: 0}
rate-limit: {qps: $3}
log: {level: notice}
metrics: {listen: "127.0.0.1:$metrics_port"}
YAML
}
valid a "$a_port" 50000 > "$work/a.yaml"
valid b "$b_port" 60000 > "$work/b.yaml"
# A broken file is the other upstream's file with one mistake: applied by error, it would switch.
broken() { # kind file
  case $1 in
    0) sed 's/rate-limit:/rate-limt:/' "$2" ;;
    1) sed 's/qps: [0-9]*/qps: lots/' "$2" ;;
    2) sed 's/address: "127.0.0.1:[0-9]*"/address: "not-an-address"/' "$2" ;;
  esac
}
cp "$work/a.yaml" "$work/dotproxy.yaml"
"$binary" check-config "$work/dotproxy.yaml" >/dev/null
"$binary" --config "$work/dotproxy.yaml" > "$work/proxy.log" 2>&1 &
proxy_pid=$!
pids+=($proxy_pid)
for _ in $(seq 100); do dig @127.0.0.1 -p "$port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done

counter() { # upstream
  python3 -c "
import re, urllib.request
text = urllib.request.urlopen('http://127.0.0.1:$metrics_port/metrics', timeout=3).read().decode()
m = re.search(r'^dotproxy_upstream_queries_total\{upstream=\"$1\"\} (\d+)', text, re.M)
print(m.group(1) if m else 0)"
}

python3 -c "
for i in range($rate * $seconds): print('r%d.unique.test A' % i)" > "$work/queries"
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$seconds" -Q "$rate" -c 4 -t 3 > "$work/dnsperf.out" 2>&1 &
perf_pid=$!
pids+=($perf_pid)
sleep 1

failures=0
active=a
valid_count=0 broken_count=0 unchanged_after_broken=0
for i in $(seq 0 $((reloads - 1))); do
  if [ $((i % 2)) = 0 ]; then
    active=$([ "$active" = a ] && echo b || echo a)
    cp "$work/$active.yaml" "$work/next.yaml"
    valid_count=$((valid_count + 1))
  else
    broken $((i % 3)) "$work/$([ "$active" = a ] && echo b || echo a).yaml" > "$work/next.yaml"
    broken_count=$((broken_count + 1))
  fi
  mv "$work/next.yaml" "$work/dotproxy.yaml"
  kill -HUP "$proxy_pid"
  sleep 0.1
  if [ $((i % 2)) = 1 ]; then
    # After a broken file, the upstream not in use must get no queries.
    idle=$([ "$active" = a ] && echo b || echo a)
    before=$(counter "$idle")
    sleep 0.1
    after=$(counter "$idle")
    if [ "$before" = "$after" ]; then
      unchanged_after_broken=$((unchanged_after_broken + 1))
    else
      echo "FAIL after broken file $i the idle upstream $idle got queries ($before -> $after)"
      failures=$((failures + 1))
    fi
  else
    sleep 0.1
  fi
done
wait "$perf_pid"

. scripts/lib/dnsperf-counts.sh
dnsperf_counts "$work/dnsperf.out"
applied=$(grep -c "configuration reloaded" "$work/proxy.log" || true)
refused=$(grep -c "configuration reload failed" "$work/proxy.log" || true)
echo "reloads=$reloads valid=$valid_count (applied $applied) broken=$broken_count (refused $refused, upstream unchanged after $unchanged_after_broken)"
echo "sent=$sent lost=$lost servfail=$servfail"
grep -E "Queries per second|Average Latency" "$work/dnsperf.out" | sed 's/^ */  /'
if [ "$sent" -gt 0 ] && [ "$lost" = 0 ] && [ "$servfail" = 0 ]; then echo "ok   no query lost or failed"; else echo "FAIL lost=$lost servfail=$servfail"; failures=$((failures + 1)); fi
if [ "$applied" = "$valid_count" ]; then echo "ok   every valid file applied"; else echo "FAIL applied $applied of $valid_count"; failures=$((failures + 1)); fi
if [ "$refused" -ge "$broken_count" ]; then echo "ok   every broken file refused"; else echo "FAIL refused $refused of $broken_count"; failures=$((failures + 1)); fi
if [ "$(counter a)" -gt 0 ] && [ "$(counter b)" -gt 0 ]; then echo "ok   both upstreams served in turn"; else echo "FAIL an upstream never served"; failures=$((failures + 1)); fi
if [ "$failures" != 0 ]; then tail -20 "$work/proxy.log"; fi
[ "$failures" = 0 ]
