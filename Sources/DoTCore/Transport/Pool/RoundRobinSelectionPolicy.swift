/// Sends queries to each usable upstream in turn.
///
/// The rotation follows the pool's configured order, so an upstream that is down is skipped and the
/// next one up takes its turn.
public struct RoundRobinSelectionPolicy: UpstreamSelectionPolicy {
    private var next = 0

    /// Creates the policy, starting with the first upstream.
    public init() {}

    public mutating func select(from candidates: [UpstreamCandidate]) -> Int {
        // The first candidate at or after the rotation point, wrapping around.
        let position = candidates.firstIndex { $0.index >= next } ?? 0
        next = candidates[position].index + 1
        return position
    }
}
