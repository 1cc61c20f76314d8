#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages dotproxy needs, only when some are missing.
#   scripts/setup.sh run     what building and running the proxy needs
#   scripts/setup.sh test    that, plus the tools the test suite drives (Unbound, certtool, gnutls-cli, dig, kdig,
#                            dnsperf, Stubby, promtool from the prometheus package)
#   scripts/setup.sh bench   that, plus the peers the end-to-end benchmark compares against (dnsdist,
#                            Knot Resolver) and valgrind (Benchmarks/footprint/run.sh)
set -euo pipefail

run_packages=(libgnutls28-dev libmimalloc-dev libhiredis-dev pkg-config ca-certificates)
test_packages=("${run_packages[@]}" unbound gnutls-bin knot-dnsutils bind9-dnsutils dnsperf stubby redis-server python3 prometheus)
bench_packages=("${test_packages[@]}" dnsdist knot-resolver valgrind)

case "${1:-run}" in
  run) wanted=("${run_packages[@]}") ;;
  test) wanted=("${test_packages[@]}") ;;
  bench) wanted=("${bench_packages[@]}") ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 64 ;;
esac

missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "setup: missing ${missing[*]}, and apt-get is not available to install them" >&2
  exit 69
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged Unbound, dnsdist and Prometheus services on install; the tests start their own.
for service in unbound dnsdist prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    $sudo systemctl stop "$service" || true
  fi
done
