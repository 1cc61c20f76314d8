/// An Extended DNS Error (RFC 8914): why a reply failed, as an info code and an optional text for
/// people, carried in an EDNS option of code 15.
public struct ExtendedDNSError: Hashable, Sendable, CustomStringConvertible {
    /// An EDE info code. Open: codes without a name still round-trip.
    public struct InfoCode: RawRepresentable, Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public init(integerLiteral value: UInt16) { self.rawValue = value }

        /// 0: an error that no other code describes; see the text.
        public static let other: InfoCode = 0
        /// 3: the answer is stale (RFC 8767).
        public static let staleAnswer: InfoCode = 3
        /// 15: the name is blocked by the operator's policy (a blocklist).
        public static let blocked: InfoCode = 15
        /// 17: the name is filtered at the client's request.
        public static let filtered: InfoCode = 17
        /// 18: the client is not allowed to query.
        public static let prohibited: InfoCode = 18
        /// 22: no upstream could be reached, or none replied in time.
        public static let noReachableAuthority: InfoCode = 22
        /// 23: an unrecoverable error while talking to an upstream (refused, reset, TLS, certificate).
        public static let networkError: InfoCode = 23

        private static let names: [UInt16: String] = [
            0: "Other Error", 3: "Stale Answer", 15: "Blocked", 17: "Filtered", 18: "Prohibited",
            22: "No Reachable Authority", 23: "Network Error",
        ]

        public var description: String { Self.names[rawValue] ?? "EDE\(rawValue)" }
    }

    /// The longest text this library writes, in UTF-8 octets; longer texts are cut at a character.
    public static let maximumTextLength = 160

    /// The info code.
    public var code: InfoCode
    /// Text for people; may be empty.
    public var text: String

    /// Creates an error; `text` is cut to ``maximumTextLength`` octets.
    public init(code: InfoCode, text: String = "") {
        self.code = code
        var cut = Substring(text)
        while cut.utf8.count > Self.maximumTextLength { cut = cut.dropLast() }
        self.text = String(cut)
    }

    /// The error carried by `option`, if it is a well-formed EDE option.
    public init?(_ option: EDNSOption) {
        guard option.code == .extendedError, option.data.count >= 2 else { return nil }
        self.code = InfoCode(rawValue: UInt16(option.data[0]) << 8 | UInt16(option.data[1]))
        self.text = String(decoding: option.data.dropFirst(2), as: UTF8.self)
    }

    /// The option's payload: the info code, then the text in UTF-8.
    var payload: [UInt8] { [UInt8(code.rawValue >> 8), UInt8(truncatingIfNeeded: code.rawValue)] + Array(text.utf8) }

    /// The error as an EDNS option.
    public var option: EDNSOption { EDNSOption(code: .extendedError, data: payload) }

    public var description: String { text.isEmpty ? "\(code)" : "\(code): \(text)" }
}
