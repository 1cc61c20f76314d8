#!/usr/bin/env bash
# Three dotproxy replicas sharing one real Redis (started here on loopback) as their second cache
# tier, in front of one Unbound over DoT: a name or an NXDOMAIN first asked through replica 1 is
# answered by replicas 2 and 3 with no new upstream query and TTLs aged; then, under dnsperf load on all
# three, Redis is paused, killed and restarted, and no query may be lost and Redis hits must resume; the
# p99 during each fault is printed (with a release build, pass --assert-latency to fail above the
# second-tier deadline plus the miss p99; Docs/performance.md). See Benchmarks/redis/replicas.py. Last,
# scripts/redis_attacks.py puts a hostile Redis behind one replica: every query must still be answered,
# correctly, with memory and reconnections bounded. Fails loudly if a tool is missing.
#   scripts/e2e-redis.sh [path/to/dotproxy] [queries per second per replica] [--assert-latency]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/debug/dotproxy}
rate=${2:-500}
shift $(( $# > 2 ? 2 : $# ))
for tool in python3 dig dnsperf redis-server unbound-control "$binary"; do
  command -v "$tool" >/dev/null || { echo "e2e-redis: $tool is missing" >&2; exit 69; }
done
work=$(mktemp -d)
trap 'scripts/unbound-rig.sh stop "$work/rig" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT INT TERM
scripts/unbound-rig.sh start "$work/rig" >/dev/null
python3 Benchmarks/redis/replicas.py check --binary "$binary" --rig "$work/rig" --rate "$rate" "$@"
# Then a hostile or broken Redis: silent, slow, garbage, huge, unsolicited, poisoned, refusing.
python3 scripts/redis_attacks.py --binary "$binary" --rig "$work/rig"
echo "e2e-redis: passed"
