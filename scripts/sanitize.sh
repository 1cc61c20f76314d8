#!/usr/bin/env bash
# Runs the Swift test suite (unit, loopback integration, Unbound interop) under ThreadSanitizer and
# AddressSanitizer, each built in its own folder (.build-tsan, .build-asan), and fails on any report or
# failing test: a report stops the run (halt_on_error). Installs what the tests need first.
#   scripts/sanitize.sh              # both
#   scripts/sanitize.sh address      # one: thread or address
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
# Suppressions: only reports in dependencies, each with its reason (scripts/tsan-suppressions.txt).
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan-suppressions.txt"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=0"
for sanitizer in "${@:-thread address}"; do
  for name in $sanitizer; do
    case $name in
      thread) folder=.build-tsan ;;
      address) folder=.build-asan ;;
      *) echo "sanitize: $name is not thread or address" >&2; exit 64 ;;
    esac
    echo "== swift test under the $name sanitizer"
    swift test --disable-xctest --sanitize="$name" --scratch-path "$folder"
  done
done
