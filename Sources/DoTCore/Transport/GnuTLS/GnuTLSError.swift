internal import CGnuTLS

/// An error reported by GnuTLS, with the context it happened in.
///
/// It keeps GnuTLS's own error code and `gnutls_strerror` text, whether GnuTLS considers it fatal,
/// and what dotproxy was doing at the time. No GnuTLS type is exposed: the code is a plain integer.
public struct GnuTLSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The GnuTLS error code (a negative `GNUTLS_E_*` value), or 0 for a failure that GnuTLS itself
    /// did not report, such as a library that is too old.
    public var code: Int
    /// GnuTLS's text for the code, or dotproxy's own explanation when ``code`` is 0.
    public var message: String
    /// Whether the session cannot continue after this error.
    public var isFatal: Bool
    /// What was being done: `handshake`, `record send`, `load CA file` and so on.
    public var operation: String

    /// Creates an error from a GnuTLS return code.
    init(code: Int32, operation: String) {
        self.code = Int(code)
        self.message = String(cString: gnutls_strerror(code))
        self.isFatal = gnutls_error_is_fatal(code) != 0
        self.operation = operation
    }

    /// Creates an error that GnuTLS did not report itself.
    ///
    /// - Parameters:
    ///   - message: What went wrong.
    ///   - operation: What was being done.
    public init(message: String, operation: String) {
        self.code = 0
        self.message = message
        self.isFatal = true
        self.operation = operation
    }

    public var description: String {
        code == 0 ? "GnuTLS \(operation): \(message)" : "GnuTLS \(operation): \(message) (\(code))"
    }
}
