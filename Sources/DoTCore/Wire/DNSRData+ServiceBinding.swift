extension DNSRData {
    /// The data of an SVCB or HTTPS record (RFC 9460 §2.2). Parameters are kept as opaque values.
    public struct ServiceBinding: Hashable, Sendable, CustomStringConvertible {
        /// One SvcParam: a key and its value in wire form.
        public struct Parameter: Hashable, Sendable {
            /// The SvcParamKey (for example 1 for `alpn`).
            public var key: UInt16
            /// The value in wire form.
            public var value: [UInt8]

            /// Creates a parameter.
            public init(key: UInt16, value: [UInt8]) {
                self.key = key
                self.value = value
            }
        }

        /// 0 for alias mode, otherwise the service priority.
        public var priority: UInt16
        /// The target name; the root means the owner name itself.
        public var target: DNSName
        /// The parameters, in wire order.
        public var parameters: [Parameter]

        /// Creates service binding data; the parameters are the fields of the same names.
        public init(priority: UInt16, target: DNSName, parameters: [Parameter] = []) {
            self.priority = priority
            self.target = target
            self.parameters = parameters
        }

        public var description: String {
            ([String(priority), target.description]
                + parameters.map { "key\($0.key)=\\# \($0.value.count) \(DNSRData.hex($0.value))" })
                .joined(separator: " ")
        }
    }
}
