/// Sends each query to the upstream with the fewest queries in flight; ties go to the lower latency
/// estimate (an upstream with no estimate yet counts as fastest, so it gets tried), then to the
/// earlier upstream in configured order.
public struct LeastOutstandingSelectionPolicy: UpstreamSelectionPolicy {
    /// Creates the policy.
    public init() {}

    public mutating func select(from candidates: [UpstreamCandidate]) -> Int {
        var best = 0
        for position in candidates.indices.dropFirst() {
            let candidate = candidates[position]
            let current = candidates[best]
            if candidate.outstanding != current.outstanding {
                if candidate.outstanding < current.outstanding { best = position }
            } else if (candidate.latency ?? .zero) < (current.latency ?? .zero) {
                best = position
            }
        }
        return best
    }
}
