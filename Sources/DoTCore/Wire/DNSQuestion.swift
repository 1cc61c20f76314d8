/// One entry of the question section: the name, type and class being asked for.
public struct DNSQuestion: Hashable, Sendable, CustomStringConvertible {
    /// The name asked for, in the case the client sent.
    public var name: DNSName
    /// The record type asked for.
    public var type: DNSRecordType
    /// The class asked for, usually ``DNSClass/internet``.
    public var `class`: DNSClass

    /// Creates a question.
    ///
    /// - Parameters:
    ///   - name: The name asked for.
    ///   - type: The record type asked for.
    ///   - class: The class; `IN` by default.
    public init(name: DNSName, type: DNSRecordType, class: DNSClass = .internet) {
        self.name = name
        self.type = type
        self.class = `class`
    }

    public var description: String { "\(name) \(`class`) \(type)" }
}
