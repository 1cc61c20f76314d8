/// A resource record of the answer, authority or additional section.
///
/// The OPT pseudo-record is not a `DNSResourceRecord`: it is decoded into ``EDNSRecord`` and kept in
/// ``DNSMessage/edns``.
public struct DNSResourceRecord: Hashable, Sendable, CustomStringConvertible {
    /// The owner name.
    public var name: DNSName
    /// The record type. For typed ``rdata`` this matches the case; for opaque data it says what it is.
    public var type: DNSRecordType
    /// The class.
    public var `class`: DNSClass
    /// The time to live, in seconds.
    public var ttl: UInt32
    /// The record data.
    public var rdata: DNSRData

    /// Creates a record with an explicit type, as needed for ``DNSRData/opaque(_:)`` data.
    ///
    /// - Parameters:
    ///   - name: The owner name.
    ///   - type: The record type.
    ///   - class: The class; `IN` by default.
    ///   - ttl: The time to live, in seconds.
    ///   - rdata: The record data.
    public init(name: DNSName, type: DNSRecordType, class: DNSClass = .internet, ttl: UInt32, rdata: DNSRData) {
        self.name = name
        self.type = type
        self.class = `class`
        self.ttl = ttl
        self.rdata = rdata
    }

    /// Creates a record whose type follows from typed record data.
    ///
    /// - Parameters:
    ///   - name: The owner name.
    ///   - class: The class; `IN` by default.
    ///   - ttl: The time to live, in seconds.
    ///   - rdata: Typed record data; opaque data needs ``init(name:type:class:ttl:rdata:)``.
    public init(name: DNSName, class: DNSClass = .internet, ttl: UInt32, rdata: DNSRData) {
        guard let type = rdata.impliedType else {
            preconditionFailure("opaque RDATA needs an explicit record type")
        }
        self.init(name: name, type: type, class: `class`, ttl: ttl, rdata: rdata)
    }

    public var description: String { "\(name) \(ttl) \(`class`) \(type) \(rdata)" }
}
