#!/usr/bin/env bash
# A soak of dotproxy under load with a fault every minute: upstreams killed, paused, slowed and
# replaced by a liar, floods, idle and trickling TCP connections, reloads, the shared Redis paused and
# killed. Not part of CI.
#   Benchmarks/soak/run.sh [--minutes 30] [--rate QPS] [--out DIR]
# Builds dotproxy as it ships, installs what it needs (Unbound, dnsperf, certtool; matplotlib from
# PyPI for the plot), then runs Benchmarks/soak/soak.py; its docstring lists the faults and the
# figures. Results (CSV, PNG, summary) go to Benchmarks/results/soak-TIME/, outside git.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh test
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib || true
binary=$(scripts/build-release.sh)
exec python3 Benchmarks/soak/soak.py --dotproxy "$binary" "$@"
