import NIOCore

/// The state of one upstream in an ``UpstreamPool`` now. What happened to it over time (queries,
/// errors, failovers, probes) is counted in the metrics, labelled with its name.
public struct UpstreamMemberStatus: Hashable, Sendable {
    /// The upstream's name, as configured.
    public var name: String
    /// Whether queries may go to it now.
    public var isUp: Bool
    /// Why it last went down, while it is down.
    public var downReason: String
    /// Queries in flight to it.
    public var outstanding: Int
    /// Its smoothed reply time, once it has answered.
    public var latency: TimeAmount?

    /// Creates a status.
    public init(
        name: String,
        isUp: Bool = true,
        downReason: String = "",
        outstanding: Int = 0,
        latency: TimeAmount? = nil
    ) {
        self.name = name
        self.isUp = isUp
        self.downReason = downReason
        self.outstanding = outstanding
        self.latency = latency
    }
}
