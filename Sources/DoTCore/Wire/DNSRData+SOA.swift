extension DNSRData {
    /// The data of an SOA record (RFC 1035 §3.3.13).
    public struct SOA: Hashable, Sendable, CustomStringConvertible {
        /// The primary name server of the zone.
        public var primaryNameServer: DNSName
        /// The mailbox of the person responsible, in name form.
        public var responsibleMailbox: DNSName
        /// The zone's serial number.
        public var serial: UInt32
        /// Seconds between refreshes by secondaries.
        public var refresh: UInt32
        /// Seconds before a failed refresh is retried.
        public var retry: UInt32
        /// Seconds after which secondaries stop answering without a refresh.
        public var expire: UInt32
        /// The negative-caching TTL (RFC 2308 §4).
        public var minimum: UInt32

        /// Creates SOA data; the parameters are the fields of the same names.
        public init(
            primaryNameServer: DNSName,
            responsibleMailbox: DNSName,
            serial: UInt32,
            refresh: UInt32,
            retry: UInt32,
            expire: UInt32,
            minimum: UInt32
        ) {
            self.primaryNameServer = primaryNameServer
            self.responsibleMailbox = responsibleMailbox
            self.serial = serial
            self.refresh = refresh
            self.retry = retry
            self.expire = expire
            self.minimum = minimum
        }

        public var description: String {
            "\(primaryNameServer) \(responsibleMailbox) \(serial) \(refresh) \(retry) \(expire) \(minimum)"
        }
    }
}
