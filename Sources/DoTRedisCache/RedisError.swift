/// Why a request to Redis did not get its answer. A second cache tier treats every one as a miss.
public struct RedisError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as an open set of codes.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The code's text, also the `reason` label of the metrics.
        public let description: String

        init(_ description: String) { self.description = description }

        /// A `redis://` or `rediss://` URL that does not parse.
        public static let invalidURL = Code("invalid URL")
        /// No reply within the request's deadline.
        public static let timeout = Code("timeout")
        /// No connection is up (Redis down, or being reconnected after a back-off).
        public static let notConnected = Code("not connected")
        /// The breaker is open after repeated failures: Redis is skipped until the back-off ends.
        public static let breakerOpen = Code("breaker open")
        /// Too many requests are waiting on the connection already.
        public static let overloaded = Code("overloaded")
        /// The connection closed with the request unanswered.
        public static let connectionClosed = Code("connection closed")
        /// Redis sent something that is not RESP, or more replies than requests.
        public static let protocolError = Code("protocol error")
        /// Redis answered with an error reply (`-ERR …`, `-NOAUTH …`).
        public static let serverError = Code("server error")
        /// The client is shut down.
        public static let shutdown = Code("shutdown")
    }

    /// What went wrong.
    public var code: Code
    /// Details for the log; never a password.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public var description: String { message.isEmpty ? code.description : "\(code): \(message)" }
}
