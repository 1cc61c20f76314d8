import NIOCore

/// Decides whether a lookup may go to Redis: after `threshold` failures in a row (timeouts, errors)
/// that span at least `span`, Redis is skipped for a back-off; then one probe goes through, and its
/// outcome closes the breaker or opens it again for twice as long (up to a maximum).
///
/// The span tells a Redis that is down from a host that stalled: one stall of the proxy's loop or of
/// Redis fails every lookup in flight at once, which is many failures in a row in no time; a Redis
/// that is down or paused fails every lookup for as long as it lasts.
///
/// A value; its owner keeps it on one event loop and passes the instants in.
struct RedisCircuitBreaker: Sendable {
    enum State: Equatable, Sendable {
        /// `since`: when the first of the failures in a row was recorded.
        case closed(failures: Int, since: NIODeadline?)
        case open(until: NIODeadline, backoff: TimeAmount)
        /// One probe is in flight.
        case probing(backoff: TimeAmount)
    }

    private(set) var state = State.closed(failures: 0, since: nil)
    let threshold: Int
    let span: TimeAmount
    let minimumBackoff: TimeAmount
    let maximumBackoff: TimeAmount

    init(threshold: Int, span: TimeAmount = .zero, minimumBackoff: TimeAmount, maximumBackoff: TimeAmount) {
        self.threshold = max(1, threshold)
        self.span = max(.zero, span)
        self.minimumBackoff = minimumBackoff
        self.maximumBackoff = max(minimumBackoff, maximumBackoff)
    }

    /// Whether Redis is being skipped (open, or waiting for a probe's outcome).
    var isOpen: Bool {
        if case .closed = state { return false }
        return true
    }

    /// Whether a lookup at `now` may go to Redis; a `true` after the back-off makes it the probe.
    mutating func admit(now: NIODeadline) -> Bool {
        switch state {
        case .closed: return true
        case .probing: return false
        case .open(let until, let backoff):
            guard now >= until else { return false }
            state = .probing(backoff: backoff)
            return true
        }
    }

    /// A lookup got its answer. Returns whether the breaker closed: only a probe's answer (or one that
    /// arrives while a probe is out) closes it; answers to lookups sent before it opened, arriving
    /// while it is open, change nothing: a late answer says nothing about whether Redis answers now,
    /// and letting it close the breaker would make the breaker flap under a load that misses deadlines.
    mutating func recordSuccess() -> Bool {
        switch state {
        case .closed:
            state = .closed(failures: 0, since: nil)
            return false
        case .probing:
            state = .closed(failures: 0, since: nil)
            return true
        case .open:
            return false
        }
    }

    /// A lookup failed at `now`. Returns whether the breaker opened.
    mutating func recordFailure(now: NIODeadline) -> Bool {
        switch state {
        case .closed(let failures, let since):
            let first = since ?? now
            guard failures + 1 >= threshold, now - first >= span else {
                state = .closed(failures: failures + 1, since: first)
                return false
            }
            state = .open(until: now + minimumBackoff, backoff: minimumBackoff)
            return true
        case .probing(let backoff):
            let next = min(backoff * 2, maximumBackoff)
            state = .open(until: now + next, backoff: next)
            return false
        case .open:
            return false
        }
    }
}
