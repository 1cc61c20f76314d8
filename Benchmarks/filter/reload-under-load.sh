#!/usr/bin/env bash
# A million-name blocklist reloaded under load: dnsperf -> dotproxy (release build, started from a
# configuration file with the list) -> Unbound over DoT on loopback. While dnsperf sends 2,000 queries
# a second for 16 s, dotproxy is sent SIGHUP five times; each reload reads and builds the list again
# and swaps it in whole. Passes when no query is lost or answered SERVFAIL, every reload was applied,
# and a listed name is blocked before, between and after the reloads (never a half-loaded list).
# Not part of the test suite (it generates a 35 MB list). Prints the figures.
#   Benchmarks/filter/reload-under-load.sh [path/to/dotproxy]
set -euo pipefail
cd "$(dirname "$0")/../.."
binary=${1:-$(scripts/build-release.sh)}
for tool in dnsperf dig python3 "$binary"; do command -v "$tool" >/dev/null || { echo "reload-under-load: $tool is missing" >&2; exit 69; }; done
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
Benchmarks/filter/generate-list.py 1000000 hosts > "$work/list.txt"
listed=$(sed -n '500000s/^0.0.0.0 //p' "$work/list.txt")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/dotproxy.yaml" <<YAML
listen: ["127.0.0.1:$port"]
upstreams:
  rig: {address: "127.0.0.1:$RIG_DOT_PORT", auth-name: $RIG_NAME, ca-file: "$RIG_CA"}
cache: {size: 0}
filter: {blocklists: ["$work/list.txt"]}
log: {level: info}
YAML
"$binary" --config "$work/dotproxy.yaml" > "$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do dig @127.0.0.1 -p "$port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done
python3 -c "
for i in range(2000 * 16): print('r%d.unique.test A' % i)" > "$work/queries"
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l 16 -Q 2000 -c 4 -t 3 > "$work/dnsperf.out" 2>&1 &
perf_pid=$!
blocked=0 checks=0
sleep 2
for _ in 1 2 3 4 5; do
  kill -HUP "$proxy_pid"
  for _ in 1 2 3 4; do
    checks=$((checks + 1))
    dig @127.0.0.1 -p "$port" "www.$listed" | grep -q "status: NXDOMAIN" && blocked=$((blocked + 1))
    sleep 0.5
  done
done
wait "$perf_pid"
. scripts/lib/dnsperf-counts.sh
dnsperf_counts "$work/dnsperf.out"
applied=$(grep -c "configuration reloaded" "$work/proxy.log" || true)
echo "sent=$sent lost=$lost servfail=$servfail reloads_applied=$applied/5 listed_name_blocked=$blocked/$checks"
grep -E "Average Latency|Latency StdDev" "$work/dnsperf.out" | sed 's/^ */  /'
grep -o "took=[^ ]* seconds" "$work/proxy.log" | sed "s/^/  list load /" | head -6 || true
[ "$sent" -gt 0 ] && [ "$lost" = 0 ] && [ "$servfail" = 0 ] && [ "$applied" = 5 ] && [ "$blocked" = "$checks" ]
