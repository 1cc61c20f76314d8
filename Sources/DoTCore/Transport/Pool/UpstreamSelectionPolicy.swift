/// Chooses which upstream of an ``UpstreamPool`` receives a query.
///
/// The pool calls ``select(from:)`` under its lock, once per attempt, with the upstreams that are up
/// and not yet tried for this query, in configured order. A policy may keep state (a rotation
/// counter, a random generator); it must be cheap, since it runs for every query.
///
/// The library provides ``LeastOutstandingSelectionPolicy`` (the default), ``RoundRobinSelectionPolicy``,
/// ``SequentialSelectionPolicy``, ``RandomSelectionPolicy`` and ``FastestSelectionPolicy``.
public protocol UpstreamSelectionPolicy: Sendable {
    /// Returns the position in `candidates` of the upstream to use.
    ///
    /// - Parameter candidates: The usable upstreams, in configured order; never empty.
    /// - Returns: An index into `candidates`.
    mutating func select(from candidates: [UpstreamCandidate]) -> Int
}

extension UpstreamSelectionPolicy where Self == LeastOutstandingSelectionPolicy {
    /// The upstream with the fewest queries in flight, ties broken by latency (as dnsdist does).
    public static var leastOutstanding: Self { LeastOutstandingSelectionPolicy() }
}

extension UpstreamSelectionPolicy where Self == RoundRobinSelectionPolicy {
    /// Each upstream in turn.
    public static var roundRobin: Self { RoundRobinSelectionPolicy() }
}

extension UpstreamSelectionPolicy where Self == SequentialSelectionPolicy {
    /// The first usable upstream in configured order: ordered failover.
    public static var sequential: Self { SequentialSelectionPolicy() }
}

extension UpstreamSelectionPolicy where Self == RandomSelectionPolicy {
    /// A uniformly random upstream.
    public static var random: Self { RandomSelectionPolicy() }
}

extension UpstreamSelectionPolicy where Self == FastestSelectionPolicy {
    /// The lowest latency estimate, exploring the others now and then.
    public static var fastest: Self { FastestSelectionPolicy() }
}
