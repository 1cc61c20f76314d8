# Sourced by the scripts that drive dnsperf: dnsperf_counts FILE sets $sent, $lost and $servfail from
# its report (0 when no reply was SERVFAIL).
dnsperf_counts() {
  sent=$(awk '/Queries sent:/{print $3}' "$1")
  lost=$(awk '/Queries lost:/{print $3}' "$1")
  servfail=$(grep -oE 'SERVFAIL [0-9]+' "$1" | awk '{print $2}' || true)
  servfail=${servfail:-0}
}
