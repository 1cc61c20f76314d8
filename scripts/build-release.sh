#!/usr/bin/env bash
# Builds dotproxy as it ships and prints the binary's path on stdout (the build's own output goes to
# stderr): release mode, with the Swift runtime linked in, so the binary needs no toolchain at run
# time. scripts/run.sh, the end-to-end benchmark and the container image all build through here, so
# what is measured is what runs.
#
# The one setting beyond Swift's release defaults: the run-time half of Swift's exclusivity checking is
# off (`-enforce-exclusivity=unchecked`, for dotproxy and its dependencies; the compile-time half
# stays), because SwiftNIO's ByteBuffer writes and event-loop tick pay for it on every query. Debug
# builds, the test suite, the sanitizer runs and the fuzz targets keep the checks, so a violation is
# found there. Docs/performance.md ("Run-time exclusivity checks") has the side-by-side measurement
# that keeps it.
#
#   scripts/build-release.sh [SWIFT BUILD ARGUMENTS...]   extra arguments go to `swift build` as they are
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-c release --static-swift-stdlib --product dotproxy -Xswiftc -enforce-exclusivity=unchecked)
swift build "${args[@]}" "$@" >&2
echo "$(swift build "${args[@]}" --show-bin-path)/dotproxy"
