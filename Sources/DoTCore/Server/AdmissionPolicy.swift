/// Who may query a ``ForwardingQueryHandler``, and how fast: the access list, what those outside it
/// get, and the rate limiter. Replaceable while the handler serves
/// (``ForwardingQueryHandler/updateAdmission(_:)``), as a configuration reload does.
public struct AdmissionPolicy: Sendable {
    /// The client networks that may query.
    public var accessControl: AccessControlList
    /// What a client outside ``accessControl`` gets.
    public var deniedAction: AccessControlList.DeniedAction
    /// Per-client limits, or `nil` for none.
    public var rateLimiter: (any QueryRateLimiter)?

    /// Creates a policy.
    ///
    /// - Parameters:
    ///   - accessControl: Who may query; loopback and private networks by default.
    ///   - deniedAction: What clients outside the access list get: REFUSED (the default) or nothing.
    ///   - rateLimiter: Per-client limits; none by default.
    public init(
        accessControl: AccessControlList = .default,
        deniedAction: AccessControlList.DeniedAction = .refuse,
        rateLimiter: (any QueryRateLimiter)? = nil
    ) {
        self.accessControl = accessControl
        self.deniedAction = deniedAction
        self.rateLimiter = rateLimiter
    }
}
