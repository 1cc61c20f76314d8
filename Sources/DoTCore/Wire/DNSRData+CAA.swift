extension DNSRData {
    /// The data of a CAA record (RFC 8659 §4.1).
    public struct CAA: Hashable, Sendable, CustomStringConvertible {
        /// The flags octet; bit 0x80 marks the property critical.
        public var flags: UInt8
        /// The property tag, such as `issue`: 1 to 15 ASCII letters and digits.
        public var tag: String
        /// The property value, as raw octets.
        public var value: [UInt8]

        /// Creates CAA data; the parameters are the fields of the same names.
        public init(flags: UInt8, tag: String, value: [UInt8]) {
            self.flags = flags
            self.tag = tag
            self.value = value
        }

        public var description: String { "\(flags) \(tag) \(DNSRData.quoted(value))" }
    }
}
