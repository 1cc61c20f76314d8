#!/usr/bin/env bash
# Sets up and runs the proxy: installs the system packages it needs (only those missing), builds in
# release mode and starts dotproxy with the given options, for example:
#   scripts/run.sh --upstream 1.1.1.1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
exec swift run -c release dotproxy "$@"
