#!/usr/bin/env bash
# Sets up and runs the proxy: installs the system packages it needs (only those missing), builds the
# binary as it ships (scripts/build-release.sh, as the container image is built) and starts dotproxy
# with the given options, for example:
#   scripts/run.sh --upstream 1.1.1.1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
binary="$(scripts/build-release.sh)"
exec "$binary" "$@"
