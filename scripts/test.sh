#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs the tools the tests drive (Unbound, certtool, dig,
# kdig, dnsperf, redis-server; only those missing), checks the built proxy with dig and kdig on
# loopback, its failover with dnsperf against two Unbounds, 50 configuration reloads under load, its
# recovery from outages of every upstream, its bounds against hostile TCP clients and a low descriptor
# limit, and three replicas sharing a real Redis through its faults, then runs every Swift test (unit,
# loopback integration, and interop with a real Unbound over DoT and a real Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
swift build
scripts/e2e-clients.sh .build/debug/dotproxy
scripts/e2e-failover.sh .build/debug/dotproxy
scripts/e2e-reload.sh .build/debug/dotproxy
scripts/e2e-outage.sh .build/debug/dotproxy
scripts/e2e-attacks.sh .build/debug/dotproxy
scripts/e2e-redis.sh .build/debug/dotproxy
swift test --disable-xctest
