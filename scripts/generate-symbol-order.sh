#!/usr/bin/env bash
# Regenerates scripts/symbol-order.txt: the functions the proxy executes, hottest first, which
# scripts/build-release.sh hands to lld (--symbol-ordering-file) so that they sit together at the start
# of .text.
#
# Why: the kernel maps a binary's code into the process 64 KiB at a time around each page it runs
# (fault-around). Scattered among 13 MiB of code, the 1 MiB the proxy actually runs kept 8.4 MiB of the
# binary's code mapped at idle; packed together, 5.3 MiB, and idle RSS fell by 3 MiB (Docs/performance.md,
# "Idle memory"). And a query that arrives after the proxy slept finds its code out of the CPU's caches
# and TLB: the fewer pages and lines its path spans, the less it waits for them (Docs/performance.md,
# "Code layout for a cold query"). Only code layout changes: a stale or missing list costs memory and
# time, never correctness.
#
# How: builds dotproxy as it ships, runs it under valgrind's callgrind against the loopback Unbound rig,
# sends it the queries it serves (UDP and TCP, cache hits and misses, NXDOMAIN, EDNS), then a metrics
# scrape, stops it, and lists every function that ran: first those a UDP cache hit runs, then those a
# TCP cache hit runs, then those the other queries run, each group most instructions first, so that
# the query path spans as few pages as it can; then the rest (start-up, the scrape, shutdown).
#
#   scripts/generate-symbol-order.sh        needs valgrind, unbound, gnutls-bin, bind9-dnsutils, curl
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in valgrind callgrind_control dig curl; do
  command -v "$tool" >/dev/null || { echo "generate-symbol-order: $tool is not installed (apt-get install valgrind bind9-dnsutils curl)" >&2; exit 69; }
done

. scripts/callgrind-proxy.sh
metrics_port=$(free_port)
start_callgrind_proxy -- --metrics-listen "127.0.0.1:$metrics_port"

ask() { dig +tries=1 +time=10 @127.0.0.1 -p "$port" "$@" >/dev/null || true; }

# Five profiles, listed in this order: cache hits over UDP (callgrind.out.2), cache hits over one TCP
# connection (callgrind.out.3), the other queries (callgrind.out.4), start-up with a first round of
# every kind of query, which does the one-time work (metadata, conformances, the upstream connection;
# callgrind.out.1), and the rest (the scrape, shutdown; callgrind.out). Hits are most of a resolver's
# traffic and the least work each, so a cold cost weighs most on them: their path is packed first and
# tightest.
hits() { for name in a.test www.test; do ask "$name" A; ask "$name" AAAA; done; }
# Twenty hits on one connection (+keepopen), as a stub resolver or dnsperf sends them.
tcp_hits() { ask +tcp +keepopen $(for _ in 1 2 3 4 5; do echo a.test A a.test AAAA www.test A www.test AAAA; done); }
queries() {
  hits
  tcp_hits
  for i in $(seq 20); do ask "order$1-$i.unique.test" A; ask +tcp "order$1-tcp$i.unique.test" A; done
  ask no-such-name.invalid A
  ask +dnssec a.test A
  ask +edns=1 a.test A
  ask +noedns a.test A
}
queries 1
callgrind_control --dump=start-up "$proxy_pid" >/dev/null 2>&1
for _ in 1 2 3 4 5; do hits; done
callgrind_control --dump=hits "$proxy_pid" >/dev/null 2>&1
tcp_hits
callgrind_control --dump=tcp-hits "$proxy_pid" >/dev/null 2>&1
for round in 2 3 4; do queries "$round"; done
callgrind_control --dump=queries "$proxy_pid" >/dev/null 2>&1
curl -fsS "http://127.0.0.1:$metrics_port/metrics" >/dev/null
curl -fsS "http://127.0.0.1:$metrics_port/ready" >/dev/null

kill -TERM "$proxy_pid"
wait "$proxy_pid" || true
proxy_pid=

# Every function of the binary that ran (C and C++ runtime functions too), profile by profile in the
# order above, and within each profile most instructions first.
python3 - "$work/dotproxy" "$work/callgrind.out".{2,3,4,1} "$work/callgrind.out" > "$work/executed.txt" <<'EOF'
import collections, sys
sys.path.insert(0, "scripts")
from callgrind_costs import own_costs
binary, listed = sys.argv[1], set()
for path in sys.argv[2:]:
    own = collections.Counter()
    for obj, fn, _, instructions in own_costs(path):
        if obj == binary and not fn.startswith("0x"):  # code without a symbol has nothing to order by
            own[fn] += instructions
    for name, _ in own.most_common():
        if name not in listed:
            listed.add(name)
            print(name)
EOF

# lld moves whole input sections, and a name orders every section that defines it. So two kinds of
# function stay where they are: one in a section over 64 KiB that is mostly cold (the static Swift
# runtime's Swift.o keeps 1.6 MB in one .text; moving it would spread the hot code apart), and a local
# helper whose name many objects define (objectdestroyTm, closures' thunks), which would drag all their
# sections in. The linker map says which section holds each function.
scripts/build-release.sh -Xlinker "-Map=$work/link.map" -Xlinker --no-demangle >/dev/null
python3 - "$work/link.map" "$work/executed.txt" > scripts/symbol-order.txt <<'EOF'
import collections, re, sys
executed = [line.strip() for line in open(sys.argv[2])]
wanted = set(executed)
# Map lines: VMA LMA Size Align, then at indent 1 an output section, at 9 an input section, at 17 a symbol.
line_pattern = re.compile(r"^\s*[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+( +)(\S+)")
section_size, sections_of, symbol_size = {}, collections.defaultdict(set), {}
output = section = None
for line in open(sys.argv[1]):
    match = line_pattern.match(line)
    if not match:
        continue
    size, indent, name = int(match.group(1), 16), len(match.group(2)), match.group(3)
    if indent == 1:
        output = name
    elif indent == 9:
        section = name
        section_size[section] = size
    elif indent == 17 and output == ".text" and name in wanted:
        sections_of[name].add(section)
        symbol_size[name] = size
hot_bytes = collections.Counter()
for name, sections in sections_of.items():
    if len(sections) == 1:
        hot_bytes[next(iter(sections))] += symbol_size[name]
for name in executed:
    sections = sections_of.get(name)
    if sections is None:
        print(name)  # not in the map: lld skips it
    elif len(sections) == 1:
        section = next(iter(sections))
        if section_size[section] <= 65536 or 2 * hot_bytes[section] >= section_size[section]:
            print(name)
EOF
echo "scripts/symbol-order.txt: $(wc -l < scripts/symbol-order.txt) functions" >&2
