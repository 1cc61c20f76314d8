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
# - Each function in its own section, and with lld the functions the proxy runs (scripts/symbol-order.txt,
#   made by scripts/generate-symbol-order.sh) placed together at the start of the code: the kernel maps
#   code 64 KiB around each page that runs, so packed hot code keeps about 3 MiB of cold code out of
#   memory (Docs/performance.md).
#
# - libstdc++ linked in (the Swift runtime uses a few of its string and allocation functions). Loading
#   libstdc++.so costs about 1 MiB of idle RSS, mostly its symbol tables read while the loader binds
#   its relocations; linked in, only the members the runtime uses come along (about 85 KB). The
#   runtime's link arguments say `-lstdc++`, so a directory holding only the archive is searched first.
#   No other library the proxy loads uses libstdc++.
#
#   scripts/build-release.sh [SWIFT BUILD ARGUMENTS...]   extra arguments go to `swift build` as they are
set -euo pipefail
cd "$(dirname "$0")/.."

args=(-c release --static-swift-stdlib --product dotproxy
  -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections)
toolchain_bin="$(dirname "$(readlink -f "$(command -v swift)")")"
if [ -x "$toolchain_bin/ld.lld" ]; then
  args+=(-Xswiftc -use-ld=lld -Xlinker --no-export-dynamic)
  if [ -f scripts/symbol-order.txt ]; then
    args+=(-Xlinker "--symbol-ordering-file=$PWD/scripts/symbol-order.txt" -Xlinker --no-warn-symbol-ordering)
  fi
  glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
  if [ -n "$glibc" ] && [ "$(printf '%s\n' 2.36 "$glibc" | sort -V | head -1)" = 2.36 ]; then
    args+=(-Xlinker -z -Xlinker pack-relative-relocs)
  fi
fi

libstdcxx="$("$toolchain_bin/clang" -print-file-name=libstdc++.a 2>/dev/null || true)"
if [ -f "$libstdcxx" ]; then
  mkdir -p .build/static-libstdc++
  ln -sfn "$libstdcxx" .build/static-libstdc++/libstdc++.a
  args+=(-Xswiftc "-L$PWD/.build/static-libstdc++")
fi

binary="$(swift build -c release --static-swift-stdlib --show-bin-path)/dotproxy"
# SwiftPM does not see the ordering file as an input: relink when it changed since the last link.
if [ scripts/symbol-order.txt -nt "$binary" ]; then rm -f "$binary"; fi
swift build "${args[@]}" "$@" >&2
echo "$binary"
