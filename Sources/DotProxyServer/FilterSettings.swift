import DoTCore

/// The filter's configuration: the list files and what a blocked query gets.
struct FilterSettings: Hashable, Sendable {
    var blocklists: [String]
    var allowlists: [String]
    var action: BlockAction
    var ttl: UInt32
    /// A file of names answered locally.
    var localRecords: String?
}
