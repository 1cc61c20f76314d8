#!/usr/bin/env bash
# Builds a fuzz target with libFuzzer and AddressSanitizer, then runs it for a bounded time (first
# argument, in seconds; 60 by default), seeded with its committed corpus (Fuzz/corpus/TARGET).
#   Fuzz/run.sh [SECONDS] [TARGET] [-runs=N and other libFuzzer flags…]
# TARGET is one of
#   wire      DNS messages: view → decode → encode → decode, every stage agreeing (the default)
#   reply     an upstream's byte stream into a DoT connection's reply path: framing, ID and question
#             matching, out-of-order, short and oversized frames, the close after
#   pipeline  client datagrams and TCP streams through the whole query pipeline, with a scripted
#             upstream: every reply parses and answers its query
#   lists     filter lists (hosts, plain, Adblock) and local-records files: every plain name listed is
#             blocked with its subdomains, every local answer parses and answers its query
#   config    configuration files, read as a start reads them: every refusal has lines of the file,
#             a complaint about an option is said of the key that set it, what passes keeps its upstreams
#   all       each of them for SECONDS
# (SwiftPM passes each --sanitize as its own -sanitize flag and the last one wins, so the combined
# flag goes through -Xswiftc; --sanitize=fuzzer stays so that SwiftPM links libFuzzer's main. The
# reply, pipeline and config targets reach internals with @testable, hence -enable-testing.)
# A crash leaves its input as Fuzz/crash-* and fails the run; new inputs are kept in Fuzz/corpus-run.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
target=${2:-wire}
shift $(( $# > 2 ? 2 : $# ))
if [ "$target" = all ]; then
  for each in wire reply pipeline lists config; do "$0" "$seconds" "$each" "$@"; done
  exit 0
fi
case "$target" in
  wire) product=WireFuzzer ;;
  reply) product=DoTReplyFuzzer ;;
  pipeline) product=PipelineFuzzer ;;
  lists) product=ListFuzzer ;;
  config) product=ConfigFuzzer ;;
  *) echo "usage: $0 [SECONDS] [wire|reply|pipeline|lists|config|all] [libFuzzer flags]" >&2; exit 64 ;;
esac
export SWIFT_BACKTRACE=enable=no  # a crash exits at once instead of symbolicating
ln -sfn .. dotproxy
swift build -c release --product "$product" --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing
run="corpus-run/$target"
rm -rf "$run" && mkdir -p "$run"
cp "corpus/$target"/* "$run/"
[ "$target" != wire ] || cp ../Tests/DoTCoreTests/Fixtures/packets/*.bin "$run/"
".build/release/$product" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix=./ "$@" "$run"
