#!/usr/bin/env bash
# Builds the DocC documentation of DoTCore (Sources/DoTCore/DoTCore.docc plus every public symbol's doc
# comment) into .build/docs, and fails on any DocC warning (a broken link, an unknown symbol).
#   scripts/docs.sh            then open .build/docs/index.html through any static file server
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=.build/docs-build
graphs=$scratch/symbol-graphs
mkdir -p "$graphs"
# Make DoTCore's module stale, so its graphs are written even when nothing else changed.
touch Sources/DoTCore/Server/DNSProxyServer.swift
swift build --scratch-path "$scratch" --target DoTCore \
  -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$PWD/$graphs" | tail -1
# Only DoTCore's own graphs (the dependencies' are written beside them).
rm -rf "$scratch/DoTCore-graphs" && mkdir -p "$scratch/DoTCore-graphs" && cp "$graphs"/DoTCore*.json "$scratch/DoTCore-graphs/"
log=$(mktemp)
docc convert Sources/DoTCore/DoTCore.docc --additional-symbol-graph-dir "$scratch/DoTCore-graphs" \
  --fallback-display-name DoTCore --fallback-bundle-identifier dotproxy.DoTCore \
  --transform-for-static-hosting --output-dir .build/docs --analyze 2>&1 | tee "$log"
if grep -qE "warning|error" "$log"; then echo "docs: DocC reported problems" >&2; exit 1; fi
echo "docs: .build/docs"
