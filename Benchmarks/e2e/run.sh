#!/usr/bin/env bash
# The end-to-end comparison: dotproxy against dnsdist, Unbound, Knot Resolver and Stubby, each
# forwarding UDP/TCP to the same loopback Unbound over verified TLS, under dnsperf.
#
#   Benchmarks/e2e/run.sh [--seconds 15] [--rounds 1] [--fill 1000000] [--threads N] [--client threaded|busy]
#                         [--systems dotproxy,dnsdist,unbound,kresd,stubby]
#                         [--transports udp,tcp] [--workloads hit,miss,mixed,light,pairs]
#                         [--baseline OLD_BINARY --systems dotproxy,baseline,...]
#
# --baseline runs another dotproxy binary as one more system, baseline: two builds compared the way the
# benchmark starts and measures every system (each in its own session; see Docs/performance.md,
# "Method", for why that matters).
#
# pairs sends A and AAAA for a new name back to back, as getaddrinfo does, and times both answers.
# Every system runs as its defaults say (dotproxy: default flags, one event loop per four cores; the
# peers: one worker each), but for where it listens and forwards; the tables name each configuration.
# --threads N gives dotproxy, dnsdist (UDP listeners) and the Unbound forwarder N worker threads each;
# Knot Resolver and Stubby run one.
#
# --client threaded (the default) loads with dnsperf 4 clients x 100 outstanding on 2 threads, printing
# nothing per reply; --client busy uses one thread that prints every reply, a client that is itself
# busy, as on a machine shared with busy neighbours. Run both to see a configuration in both.
#
# --rounds N measures every system N times, alternating, and reports each figure's median (one run
# moves a lot with how SO_REUSEPORT hashes dnsperf's four sockets onto two threads). --fill N then
# caches N distinct names in each caching system and reports RSS growth per name (0 skips it).
#
# Installs what it needs (dnsperf, Unbound, dnsdist, knot-resolver, stubby, certtool, dig; only those
# missing), builds dotproxy as it ships (scripts/build-release.sh, as scripts/run.sh and the container
# image build it), then runs Benchmarks/e2e/bench.py. Results go to
# Benchmarks/e2e/results/ (ignored by git) as Markdown and JSON. Everything runs on loopback, every load
# is bounded in time, and every process started is stopped by PID, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh bench
# The distribution's units must not hold the ports or the CPU while we measure.
for unit in dnsdist kresd@1 stubby unbound; do systemctl stop "$unit" >/dev/null 2>&1 || true; done
binary="$(scripts/build-release.sh)"
exec python3 Benchmarks/e2e/bench.py --dotproxy "$binary" "$@"
