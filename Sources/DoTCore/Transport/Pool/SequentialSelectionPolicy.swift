/// Sends every query to the first usable upstream in configured order: the others are only used
/// when it is down or when a query fails over (ordered failover, like Unbound's forward-first list
/// or dnsdist's `firstAvailable`).
public struct SequentialSelectionPolicy: UpstreamSelectionPolicy {
    /// Creates the policy.
    public init() {}

    public mutating func select(from candidates: [UpstreamCandidate]) -> Int { 0 }
}
