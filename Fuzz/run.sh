#!/usr/bin/env bash
# Builds the wire-format fuzzer with libFuzzer and AddressSanitizer, then runs it for a bounded time
# (first argument, in seconds; 60 by default) seeded with the captured fixtures.
#   Fuzz/run.sh 60
# (SwiftPM passes each --sanitize as its own -sanitize flag and the last one wins, so the combined
# flag goes through -Xswiftc; --sanitize=fuzzer stays so that SwiftPM links libFuzzer's main.)
# A crash leaves its input as Fuzz/crash-* and fails the run.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
export SWIFT_BACKTRACE=enable=no  # a crash exits at once instead of symbolicating
ln -sfn .. dotproxy
swift build -c release --product WireFuzzer --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address
rm -rf corpus-run && mkdir -p corpus-run
cp ../Tests/DoTCoreTests/Fixtures/packets/*.bin corpus-run/
.build/release/WireFuzzer -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix=./ corpus-run
