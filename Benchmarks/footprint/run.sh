#!/usr/bin/env bash
# How much code a query runs when it arrives cold, counted exactly. At 200 QPS the proxy sleeps between
# queries and finds its code out of the CPU's caches and TLB, so what a query costs then follows how many
# lines and pages of code its path spans, more than how many instructions it runs (Docs/performance.md,
# "Other benchmarks").
#
# Runs dotproxy as it ships under valgrind's callgrind, one query at a time (dnsperf -Q 100 -c 1), first
# QUERIES cache hits over UDP, then QUERIES misses, then QUERIES cache hits over one TCP connection, and
# prints for each: instructions per query, and the distinct 64-byte lines and 4 KiB pages of code, per
# object, that run on (nearly) every query. Timing at low rate needs a dozen alternating rounds to show
# a 10% change on a shared machine; these counts come out the same from run to run, so a change to the
# path shows at once.
#
#   Benchmarks/footprint/run.sh [QUERIES=1000]
set -euo pipefail
cd "$(dirname "$0")/../.."
queries=${1:-1000}
scripts/setup.sh bench

. Benchmarks/profiling/callgrind-proxy.sh
# Instrumented only while the measured queries run: start-up and the warm-up are left out. The idle
# timeout outlasts the run, so no query pays for a new upstream connection.
start_callgrind_proxy --instr-atstart=no --dump-instr=yes -- --threads 1 --idle-timeout 600

python3 -c "for i in range($queries): print(f'a{i % 5}.unique.test A')" > "$work/hits.txt"
python3 -c "for i in range($queries): print(f'footprint{i}.unique.test A')" > "$work/misses.txt"
dnsperf -s 127.0.0.1 -p "$port" -d "$work/hits.txt" -n 1 -c 1 -q 1 >/dev/null  # caches the names
dig +short @127.0.0.1 -p "$port" warm-up.unique.test A >/dev/null
# The threads that ran start-up's async work exit after 5 s idle (libdispatch); one that exits while a
# kind is measured adds its teardown (mimalloc's heap, ~1.8 million instructions) to that kind's count.
# Wait until the thread count has held for 6 s (20 s at most).
threads= held=0
for _ in $(seq 40); do
  now=$(ls "/proc/$proxy_pid/task" | wc -l)
  if [ "$now" = "$threads" ]; then held=$((held + 1)); else held=0 threads=$now; fi
  [ "$held" -ge 12 ] && break
  sleep 0.5
done

answered=()
callgrind_control --instr=on "$proxy_pid" >/dev/null 2>&1
for kind in hits misses tcp-hits; do
  callgrind_control --zero "$proxy_pid" >/dev/null 2>&1
  mode=udp data=$kind
  [ "$kind" = tcp-hits ] && mode=tcp data=hits
  out=$(dnsperf -s 127.0.0.1 -p "$port" -m $mode -d "$work/$data.txt" -n 1 -c 1 -Q 100 -l $((queries / 100 + 30)) 2>&1)
  answered+=("$(echo "$out" | awk '/Queries completed/{print $3}')")
  callgrind_control --dump="$kind" "$proxy_pid" >/dev/null 2>&1
done

python3 - "$work/callgrind.out" "$queries" "${answered[@]}" <<'EOF'
import collections, sys
sys.path.insert(0, "Benchmarks/profiling")
from callgrind_costs import own_costs
base, sent, answered = sys.argv[1], int(sys.argv[2]), [int(a) for a in sys.argv[3:]]
for part, (kind, count) in enumerate(zip(["UDP cache hit", "UDP miss", "TCP cache hit"], answered), start=1):
    executed = collections.Counter()
    for obj, _, address, instructions in own_costs(f"{base}.{part}"):
        executed[obj.rsplit("/", 1)[-1], address] += instructions
    lines, pages = collections.defaultdict(set), collections.defaultdict(set)
    for (obj, address), times in executed.items():
        if times >= 0.9 * count:  # runs on (nearly) every query
            lines[obj].add(address >> 6)
            pages[obj].add(address >> 12)
    print(f"{kind}: {count} of {sent} answered, {sum(executed.values()) / count:,.0f} instructions per query")
    print(f"  {'code that runs on every query':40} {'64-byte lines':>14} {'4 KiB pages':>12}")
    for obj in sorted(lines, key=lambda o: -len(lines[o])):
        print(f"  {obj:40} {len(lines[obj]):14} {len(pages[obj]):12}")
    print(f"  {'all':40} {sum(map(len, lines.values())):14} {sum(map(len, pages.values())):12}")
EOF
