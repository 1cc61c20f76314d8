#!/usr/bin/env bash
# Builds dotproxy as it ships and prints the binary's path on stdout (the build's own output goes to
# stderr). scripts/run.sh, the end-to-end benchmark and the container image all build through here, so
# what is measured is what runs.
#
# - Release mode, with the Swift runtime linked in: the binary needs no toolchain at run time.
# - Linked by lld without exporting every symbol (the static runtime adds -export-dynamic), and with
#   packed relative relocations (DT_RELR) where glibc can load them (2.36 and later). At start-up the
#   loader then reads a few KiB of relocations instead of 1.4 MB, and no 400 KB symbol table: idle RSS
#   drops by about 2 MiB (Docs/performance.md). Without lld the default linker is used, unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

args=(-c release --static-swift-stdlib --product dotproxy)
toolchain_bin="$(dirname "$(readlink -f "$(command -v swift)")")"
if [ -x "$toolchain_bin/ld.lld" ]; then
  args+=(-Xswiftc -use-ld=lld -Xlinker --no-export-dynamic)
  glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
  if [ -n "$glibc" ] && [ "$(printf '%s\n' 2.36 "$glibc" | sort -V | head -1)" = 2.36 ]; then
    args+=(-Xlinker -z -Xlinker pack-relative-relocs)
  fi
fi

swift build "${args[@]}" >&2
echo "$(swift build -c release --static-swift-stdlib --show-bin-path)/dotproxy"
