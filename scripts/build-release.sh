#!/usr/bin/env bash
# Builds dotproxy as it ships and prints the binary's path on stdout (the build's own output goes to
# stderr): release mode, with the Swift runtime linked in, so the binary needs no toolchain at run
# time. scripts/run.sh, the end-to-end benchmark and the container image all build through here, so
# what is measured is what runs.
#
#   scripts/build-release.sh [SWIFT BUILD ARGUMENTS...]   extra arguments go to `swift build` as they are
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-c release --static-swift-stdlib --product dotproxy)
swift build "${args[@]}" "$@" >&2
echo "$(swift build "${args[@]}" --show-bin-path)/dotproxy"
