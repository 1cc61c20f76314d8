#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A SHA-256 digest of a certificate's SubjectPublicKeyInfo, as used for DoT pinning (RFC 7858 §4.2).
///
/// Written in base64, as Stubby, Knot and `certtool --key-info` (`pin-sha256:`) print it.
public struct SPKIPin: Hashable, Sendable, CustomStringConvertible {
    /// The 32-octet digest.
    public let digest: [UInt8]

    /// Parses a base64 pin, with or without a `pin-sha256:` prefix or quotes.
    ///
    /// - Returns: `nil` unless the text decodes to exactly 32 octets.
    public init?(base64 text: String) {
        var trimmed = Substring(text)
        if trimmed.hasPrefix("pin-sha256:") { trimmed = trimmed.dropFirst("pin-sha256:".count) }
        trimmed = trimmed.drop(while: { $0 == "\"" })
        while trimmed.last == "\"" { trimmed = trimmed.dropLast() }
        guard let data = Data(base64Encoded: String(trimmed)), data.count == 32 else { return nil }
        self.digest = Array(data)
    }

    /// Creates a pin from a 32-octet digest; returns `nil` for any other length.
    public init?(digest: [UInt8]) {
        guard digest.count == 32 else { return nil }
        self.digest = digest
    }

    /// The pin in base64.
    public var description: String { Data(digest).base64EncodedString() }
}
