import NIOCore

/// The passive health of one pool member: consecutive failures mark it down, and probes with
/// exponential back-off bring it back. A value type driven by the pool under its lock; times are
/// passed in, so tests drive it with any clock.
struct UpstreamHealth: Sendable {
    /// Whether queries may go to the upstream.
    private(set) var isUp = true
    /// Failures since the last success.
    private(set) var consecutiveFailures = 0
    /// The delay before the next probe while down.
    private(set) var probeDelay: TimeAmount = .zero
    /// When the next probe is due while down.
    private(set) var nextProbe: NIODeadline?
    /// The reason it last went down.
    private(set) var downReason = ""
    /// When it last failed (a query or a probe); `nil` before its first failure.
    private(set) var lastFailure: NIODeadline?

    /// Records a reply. Returns `true` when this brings a down upstream back.
    mutating func recordSuccess() -> Bool {
        consecutiveFailures = 0
        guard !isUp else { return false }
        isUp = true
        nextProbe = nil
        probeDelay = .zero
        downReason = ""
        return true
    }

    /// Records a failure. Returns `true` when this marks the upstream down; the first probe is then
    /// due `initialProbeDelay` after `now`.
    mutating func recordFailure(
        reason: String,
        now: NIODeadline,
        maximumFailures: Int,
        initialProbeDelay: TimeAmount
    ) -> Bool {
        consecutiveFailures += 1
        lastFailure = now
        guard isUp, consecutiveFailures >= maximumFailures else { return false }
        isUp = false
        downReason = reason
        probeDelay = initialProbeDelay
        nextProbe = now + initialProbeDelay
        return true
    }

    /// Records a failed probe: the delay doubles, up to `maximumProbeDelay`. Returns when the next
    /// probe is due.
    mutating func recordProbeFailure(reason: String, now: NIODeadline, maximumProbeDelay: TimeAmount) -> NIODeadline {
        consecutiveFailures += 1
        lastFailure = now
        downReason = reason
        probeDelay = min(probeDelay + probeDelay, maximumProbeDelay)
        let due = now + probeDelay
        nextProbe = due
        return due
    }

    /// Brings the next probe of a down upstream forward to `now + delay` if it is due later, and
    /// restarts the back-off from `delay`. Returns the new due time, or `nil` when nothing changed.
    mutating func expediteProbe(now: NIODeadline, delay: TimeAmount) -> NIODeadline? {
        guard !isUp, let due = nextProbe, due > now + delay else { return nil }
        probeDelay = delay
        nextProbe = now + delay
        return nextProbe
    }
}
