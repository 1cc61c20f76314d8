# Sourced by the end-to-end scripts that need two DoT upstreams: makes $work (removed on exit, with
# every process in $pids stopped), starts two Unbound rigs on loopback that share one CA
# ($work/a/ca.pem), and sets $a_port and $b_port to their DoT ports.
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  scripts/unbound-rig.sh stop "$work/a" >/dev/null 2>&1 || true
  scripts/unbound-rig.sh stop "$work/b" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
scripts/unbound-rig.sh start "$work/a" >/dev/null
mkdir -p "$work/b" && cp "$work/a/ca.key" "$work/a/ca.pem" "$work/b/"
scripts/unbound-rig.sh start "$work/b" >/dev/null
a_port=$(. "$work/a/rig.env"; echo "$RIG_DOT_PORT")
b_port=$(. "$work/b/rig.env"; echo "$RIG_DOT_PORT")
