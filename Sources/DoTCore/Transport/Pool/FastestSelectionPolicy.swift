import NIOCore

/// Sends queries to the upstream with the lowest latency estimate, and every so often to another one
/// so that the estimates of the others stay current (an upstream that recovers gets noticed).
///
/// An upstream with no estimate yet is chosen first, so each is measured. Exploration is
/// deterministic: every ``explorationInterval``-th selection goes to the next upstream after the
/// fastest, in rotation.
public struct FastestSelectionPolicy: UpstreamSelectionPolicy {
    /// One selection in this many explores instead of picking the fastest.
    public let explorationInterval: Int
    private var selections = 0
    private var explored = 0

    /// Creates the policy.
    ///
    /// - Parameter explorationInterval: Explore once every this many selections; 100 by default.
    ///   Values below 2 are raised to 2.
    public init(explorationInterval: Int = 100) {
        self.explorationInterval = max(2, explorationInterval)
    }

    public mutating func select(from candidates: [UpstreamCandidate]) -> Int {
        if let unmeasured = candidates.firstIndex(where: { $0.latency == nil }) { return unmeasured }
        var fastest = 0
        for position in candidates.indices.dropFirst()
        where candidates[position].latency! < candidates[fastest].latency! {
            fastest = position
        }
        selections += 1
        guard candidates.count > 1, selections % explorationInterval == 0 else { return fastest }
        // Explore the others in turn, never the fastest itself.
        explored = explored % (candidates.count - 1) + 1
        return (fastest + explored) % candidates.count
    }
}
