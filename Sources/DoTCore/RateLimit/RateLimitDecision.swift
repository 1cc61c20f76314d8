/// What the rate limiter decided for one query.
public struct RateLimitDecision: Hashable, Sendable, CustomStringConvertible {
    enum Base: Hashable, Sendable {
        case admit, refuse, drop, slip
    }

    let base: Base

    /// Answer the query.
    public static let admit = RateLimitDecision(base: .admit)
    /// Answer REFUSED without looking further.
    public static let refuse = RateLimitDecision(base: .refuse)
    /// Send nothing.
    public static let drop = RateLimitDecision(base: .drop)
    /// Send an empty reply with TC set, so a real client retries over TCP (UDP only).
    public static let slip = RateLimitDecision(base: .slip)

    public var description: String {
        switch base {
        case .admit: "admit"
        case .refuse: "refuse"
        case .drop: "drop"
        case .slip: "slip"
        }
    }
}
