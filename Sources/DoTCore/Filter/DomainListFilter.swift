import NIOCore

/// The library's ``QueryFilter``: answers the names of its ``LocalRecords`` itself, and blocks the
/// names in its block lists and their subdomains, unless an allow list (or an Adblock `@@` exception
/// in any list) holds the name; an allow rule always wins over a block.
///
/// Built once from its lists and then only read: a reload builds a new filter aside and swaps it in
/// (``ForwardingQueryHandler/updateFilter(_:)``), so a query never meets a half-loaded list. A lookup
/// allocates nothing.
public struct DomainListFilter: QueryFilter {
    /// The lists that block, in order; the first that holds the name is reported.
    public let blocklists: [DomainList]
    /// Names allowed whatever the block lists say: the allow lists' names, and every list's exceptions.
    public let allowed: [DomainNameSet]
    /// What a blocked query gets.
    public let action: BlockAction
    /// The TTL of the records in a blocked reply, and so how long a client keeps it.
    public let ttl: UInt32
    /// Names answered locally, before any list is consulted.
    public let localRecords: LocalRecords?

    /// The default TTL of a blocked reply: short, so that an unblocked name comes back soon.
    public static let defaultTTL: UInt32 = 60

    /// Creates a filter.
    ///
    /// - Parameters:
    ///   - blocklists: Lists of names to block.
    ///   - allowlists: Lists of names never to block (their blocking entries allow; their exceptions too).
    ///   - action: What a blocked query gets; NXDOMAIN by default.
    ///   - ttl: The TTL of a blocked reply's records; ``defaultTTL`` by default.
    ///   - localRecords: Names to answer locally; none by default.
    public init(
        blocklists: [DomainList],
        allowlists: [DomainList] = [],
        action: BlockAction = .nxdomain,
        ttl: UInt32 = DomainListFilter.defaultTTL,
        localRecords: LocalRecords? = nil
    ) {
        self.localRecords = localRecords.flatMap { $0.count > 0 || $0.hasZones ? $0 : nil }
        self.blocklists = blocklists.filter { $0.blocked.count > 0 }
        self.allowed = (allowlists.flatMap { [$0.blocked, $0.allowed] } + blocklists.map(\.allowed))
            .filter { $0.count > 0 }
        self.action = action
        self.ttl = ttl
    }

    public func decide(_ query: ParsedDNSMessage, client: SocketAddress) -> QueryFilterDecision {
        if let localRecords, let reply = localRecords.answer(query) {
            return .answered(reply: reply, source: "local-records")
        }
        guard !blocklists.isEmpty, let range = query.view.questionNameRange, range.count > 1 else { return .pass }
        // The name's wire octets without the root label.
        let match: (list: Int, entry: Int)? = query.buffer.withUnsafeReadableBytes { bytes in
            guard range.upperBound <= bytes.count else { return nil }
            let name = UnsafeRawBufferPointer(rebasing: bytes[range.lowerBound..<(range.upperBound - 1)])
            for set in allowed where set.match(name) != nil { return nil }
            for (index, list) in blocklists.enumerated() {
                if let entry = list.blocked.match(name) { return (index, entry) }
            }
            return nil
        }
        guard let match else { return .pass }
        let list = blocklists[match.list]
        return .blocked(
            reply: action.reply(to: query, ttl: ttl),
            list: list.name,
            rule: list.blocked.name(at: match.entry)
        )
    }
}
