#!/usr/bin/env bash
# Transport benchmark (issue: DoT upstream transport). In one run, against one loopback Unbound:
#   1. dnsperf -m dot straight to Unbound (1 client, OUTSTANDING queries in flight, SECONDS long)
#   2. DoTUpstreamTransport with the same number in flight, on one event loop
# and prints both QPS figures, the ratio, and how many connections the transport opened.
#   Benchmarks/transport/run.sh [SECONDS=10] [OUTSTANDING=100]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}; outstanding=${2:-100}
work=$(mktemp -d)
cleanup() { ../scripts/unbound-rig.sh stop "$work/rig" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM
ln -sfn .. dotproxy
swift build -c release --product TransportLoad > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
../scripts/unbound-rig.sh start "$work/rig" > /dev/null
. "$work/rig/rig.env"

python3 -c "
for i in range(200000): print(f'p{i}.unique.test A')" > "$work/queries.txt"
dnsperf_out=$(dnsperf -m dot -s 127.0.0.1 -p "$RIG_DOT_PORT" -d "$work/queries.txt" -c 1 -q "$outstanding" -l "$seconds" 2>&1)
dnsperf_qps=$(echo "$dnsperf_out" | awk '/Queries per second/{print $4}')
ours=$(.build/release/TransportLoad "$RIG_DOT_PORT" "$RIG_CA" "$RIG_NAME" "$seconds" "$outstanding" 1)
ours_qps=$(echo "$ours" | sed -n 's/.*qps=\([0-9]*\).*/\1/p')
connections=$(echo "$ours" | sed -n 's/.*connections=\([0-9]*\).*/\1/p')
echo "dnsperf -m dot straight to Unbound: $dnsperf_qps qps ($(echo "$dnsperf_out" | awk '/Queries lost/{print $3, $4}') lost)"
echo "DoTUpstreamTransport:               $ours_qps qps, $connections connection(s) opened ($ours)"
python3 -c "print(f'ratio (transport / dnsperf): {float($ours_qps)/float($dnsperf_qps):.2f}')"
