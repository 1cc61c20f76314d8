import Logging

/// What a ``DoTConnection`` tells the set of connections that owns it, and the little it asks of it:
/// the one interface between them. The set never reaches into a connection's state, and the
/// connection knows nothing of the set's other connections, statistics or metrics.
protocol DoTConnectionOwner: AnyObject {
    /// The upstream, for errors and logs.
    var upstream: UpstreamAddress { get }
    var logger: Logger { get }

    /// Something to count happened on the connection.
    func connection(_ connection: DoTConnection, reported event: DoTConnectionEvent)

    /// The connection closed; it takes no more queries.
    func connectionDidClose(_ connection: DoTConnection, error: UpstreamError)

    /// A query the connection cannot carry (it closed, or it was orphaned after a reset): send it on
    /// another connection.
    func resubmit(_ query: DoTQuery)

    /// The upstream gave a session ticket, for the next connection to resume.
    func storeResumptionData(_ data: [UInt8])

    /// What the channel reported, as an error that names the upstream.
    func upstreamError(for error: any Error) -> UpstreamError
}

/// What a connection reports to its owner to be counted.
enum DoTConnectionEvent {
    /// A frame that is not a DNS message.
    case malformedReply
    /// A reply that matches no pending query (ID or question).
    case unmatchedReply
    /// A TLS handshake completed.
    case handshake(resumed: Bool)
    /// A query orphaned by a reset was moved to another connection.
    case retried
}
