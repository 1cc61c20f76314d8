#!/usr/bin/env bash
# Sets up and runs the proxy: installs the system packages it needs (only those missing), builds in
# release mode (with the Swift runtime linked in, as the container image is built) and starts dotproxy
# with the given options, for example:
#   scripts/run.sh --upstream 1.1.1.1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
# `swift run` takes no --static-swift-stdlib, so build, then run the binary.
swift build -c release --static-swift-stdlib --product dotproxy >&2
exec "$(swift build -c release --static-swift-stdlib --show-bin-path)/dotproxy" "$@"
