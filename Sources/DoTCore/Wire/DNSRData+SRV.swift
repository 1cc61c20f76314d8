extension DNSRData {
    /// The data of an SRV record (RFC 2782). Its target name is never compressed on output.
    public struct SRV: Hashable, Sendable, CustomStringConvertible {
        /// Lower values are tried first.
        public var priority: UInt16
        /// The relative weight among records of the same priority.
        public var weight: UInt16
        /// The port of the service.
        public var port: UInt16
        /// The host that offers the service.
        public var target: DNSName

        /// Creates SRV data; the parameters are the fields of the same names.
        public init(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName) {
            self.priority = priority
            self.weight = weight
            self.port = port
            self.target = target
        }

        public var description: String { "\(priority) \(weight) \(port) \(target)" }
    }
}
