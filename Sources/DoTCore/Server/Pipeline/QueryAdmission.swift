import NIOCore

/// The first stage of the query path: who may ask, read from the header and the client's address
/// only, so that a flood from outside the access list or over the limit costs no parsing.
///
/// - A packet shorter than a header, or with QR set, is dropped.
/// - A client outside the access list gets REFUSED, or nothing with ``AccessControlList/DeniedAction/drop``.
/// - The rate limiter, if there is one, decides: REFUSED, a drop, or an empty TC reply for a slip.
///
/// A class, so that the handler swaps one reference when its policy is replaced, and a query takes
/// one reference to the policy it is admitted under.
final class QueryAdmission: Sendable {
    let policy: AdmissionPolicy
    let metrics: DNSProxyMetrics

    init(policy: AdmissionPolicy, metrics: DNSProxyMetrics) {
        self.policy = policy
        self.metrics = metrics
    }

    /// A door with the policy's parts given one by one.
    convenience init(
        accessControl: AccessControlList,
        deniedAction: AccessControlList.DeniedAction,
        rateLimiter: (any QueryRateLimiter)?,
        metrics: DNSProxyMetrics
    ) {
        self.init(
            policy: AdmissionPolicy(accessControl: accessControl, deniedAction: deniedAction, rateLimiter: rateLimiter),
            metrics: metrics
        )
    }

    /// What became of a query at the door.
    enum Outcome {
        /// On to parsing.
        case admitted
        /// Answered here: the reply, or `nil` for a drop.
        case answered(ByteBuffer?)
    }

    func admit(_ query: DNSClientQuery, now: NIODeadline) -> Outcome {
        let message = query.message
        guard message.readableBytes >= DNSHeader.wireLength,
            let flags = message.getInteger(at: message.readerIndex + 2, as: UInt16.self), flags & DNSHeader.Flag.qr == 0
        else {
            metrics.malformedDropped.increment()
            return .answered(nil)
        }
        guard let client = ClientAddress(query.client) else { return .admitted }
        guard policy.accessControl.allows(client) else {
            metrics.accessDenied.increment()
            return .answered(policy.deniedAction == .drop ? nil : Self.refusal(message))
        }
        guard let rateLimiter = policy.rateLimiter else { return .admitted }
        let decision = rateLimiter.decide(for: client, clientProtocol: query.clientProtocol, now: now)
        metrics.recordRateLimit(decision)
        switch decision {
        case .admit:
            return .admitted
        case .drop:
            return .answered(nil)
        case .slip:
            let empty = DNSResponseBuilder.reply(
                to: message,
                view: nil,
                rcode: .noError,
                truncated: true,
                allocator: ByteBufferAllocator()
            )
            return .answered(empty)
        default:
            return .answered(Self.refusal(message))
        }
    }

    private static func refusal(_ message: ByteBuffer) -> ByteBuffer {
        DNSResponseBuilder.reply(to: message, view: nil, rcode: .refused, allocator: ByteBufferAllocator())
    }
}
