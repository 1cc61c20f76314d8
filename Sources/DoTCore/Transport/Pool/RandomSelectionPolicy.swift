/// Sends each query to a uniformly random usable upstream.
public struct RandomSelectionPolicy: UpstreamSelectionPolicy {
    private var generator: any RandomNumberGenerator & Sendable

    /// Creates the policy.
    ///
    /// - Parameter generator: The source of randomness; the system's by default. Tests pass a seeded one.
    public init(generator: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()) {
        self.generator = generator
    }

    public mutating func select(from candidates: [UpstreamCandidate]) -> Int {
        Int.random(in: candidates.indices, using: &generator)
    }
}
