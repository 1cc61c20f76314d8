#!/usr/bin/env bash
# Failover with real servers: dnsperf -> dotproxy -> two Unbound DoT upstreams on loopback. While dnsperf
# sends a fixed rate, one Unbound is stopped and later started again on the same ports. Passes when the
# loss rate (lost queries plus SERVFAIL answers) stays under the threshold and dotproxy logged the
# upstream going down and coming back. Prints the figures. Fails loudly if a tool is missing.
#   scripts/e2e-failover.sh [path/to/dotproxy] [max-loss-percent]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/dotproxy}
max_loss=${2:-0.5}
rate=2000 seconds=14 stop_at=3 start_at=6
for tool in dnsperf dig python3 "$binary"; do command -v "$tool" >/dev/null || { echo "e2e-failover: $tool is missing" >&2; exit 69; }; done
. scripts/lib/two-upstreams.sh
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$binary" --upstream "127.0.0.1:$a_port#dns.test" --upstream "127.0.0.1:$b_port#dns.test" --ca-file "$work/a/ca.pem" \
  --cache-size 0 --listen "127.0.0.1:$port" --log-level notice > "$work/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do dig @127.0.0.1 -p "$port" a.test +short +time=1 +tries=1 >/dev/null 2>&1 && break; sleep 0.1; done

# Unique names (no cache anyway), so every query travels to an upstream.
python3 -c "
for i in range($rate * $seconds): print('f%d.unique.test A' % i)" > "$work/queries"
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries" -l "$seconds" -Q "$rate" -c 4 -t 3 > "$work/dnsperf.out" 2>&1 &
perf_pid=$!
pids+=($perf_pid)
sleep "$stop_at"
scripts/unbound-rig.sh stop "$work/b"
echo "t=${stop_at}s: stopped upstream 127.0.0.1:$b_port"
sleep $((start_at - stop_at))
scripts/unbound-rig.sh restart "$work/b" >/dev/null
echo "t=${start_at}s: started upstream 127.0.0.1:$b_port again"
wait "$perf_pid"

. scripts/lib/dnsperf-counts.sh
dnsperf_counts "$work/dnsperf.out"
loss=$(python3 -c "print(f'{100 * ($lost + $servfail) / max(1, $sent):.3f}')")
echo "sent=$sent lost=$lost servfail=$servfail loss=${loss}% (threshold ${max_loss}%)"
grep -E "Queries per second|Average Latency" "$work/dnsperf.out" | sed 's/^ */  /'
failures=0
if python3 -c "import sys; sys.exit(0 if $loss <= $max_loss and $sent > 0 else 1)"; then echo "ok   loss under threshold"; else echo "FAIL loss ${loss}%"; failures=1; fi
if grep -q "upstream down" "$work/proxy.log" && grep -q "upstream up" "$work/proxy.log"; then
  echo "ok   dotproxy logged the upstream going down and coming back"
else
  echo "FAIL no down/up events in the log"; failures=1
fi
grep -E "upstream (down|up)" "$work/proxy.log" | sed 's/^/  /' | cut -c1-200
[ "$failures" = 0 ] || { cat "$work/dnsperf.out"; exit 1; }
