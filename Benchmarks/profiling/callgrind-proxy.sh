# Sourced by Benchmarks/footprint/run.sh, from the repository's
# root: runs dotproxy as it ships under valgrind's callgrind, against the loopback Unbound rig.
#
#   . Benchmarks/profiling/callgrind-proxy.sh
#   start_callgrind_proxy [CALLGRIND OPTIONS...] -- [DOTPROXY OPTIONS...]
#
# Sets `work` (a temporary directory, removed with the rig and the proxy on exit), `port` (the proxy's
# UDP and TCP port), `proxy_pid` (valgrind's, for callgrind_control), the rig's RIG_* variables, and
# returns once the proxy answers. Profiles go to "$work/callgrind.out" (.1, .2, ... for each dump).

work=$(mktemp -d)
proxy_pid=
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  scripts/unbound-rig.sh stop "$work/rig" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_callgrind_proxy() {
  local callgrind_options=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do callgrind_options+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  local binary
  binary=$(scripts/build-release.sh)
  # valgrind reads symbols from the binary; without the DWARF it starts in seconds, not minutes.
  strip --strip-debug -o "$work/dotproxy" "$binary"
  scripts/unbound-rig.sh start "$work/rig" >/dev/null
  . "$work/rig/rig.env"
  port=$(free_port)
  valgrind --tool=callgrind --demangle=no "${callgrind_options[@]}" \
    --callgrind-out-file="$work/callgrind.out" "$work/dotproxy" \
    --upstream "127.0.0.1:$RIG_DOT_PORT#$RIG_NAME" --ca-file "$RIG_CA" \
    --listen "127.0.0.1:$port" --log-level warning "$@" >"$work/valgrind.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 120); do
    dig +short +tries=1 +time=1 @127.0.0.1 -p "$port" a.test A >/dev/null 2>&1 && return 0
    kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/valgrind.log" >&2; exit 1; }
    sleep 1
  done
  echo "callgrind-proxy: dotproxy did not answer within 120 s" >&2
  exit 1
}
