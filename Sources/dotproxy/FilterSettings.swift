import ArgumentParser
import DoTCore
import Logging
import NIOConcurrencyHelpers

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The filter's configuration: the list files and what a blocked query gets.
struct FilterSettings: Hashable, Sendable {
    var blocklists: [String]
    var allowlists: [String]
    var action: BlockAction
    var ttl: UInt32
    /// A file of names answered locally.
    var localRecords: String?
}

/// Reads the filter's list files and builds the filter, at start and at each reload. A list that
/// cannot be read at a reload keeps the copy read before; at start it is an error. Lines that cannot be
/// read are logged once per load, the first few with their numbers.
final class FilterListLoader: Sendable {
    private let logger: Logger
    private let metrics: DNSProxyMetrics
    /// The lists read last, by path.
    private let loaded = NIOLockedValueBox([String: DomainList]())
    private let loadedRecords = NIOLockedValueBox([String: LocalRecords]())

    init(metrics: DNSProxyMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
    }

    /// A filter built aside from the files `settings` names.
    ///
    /// - Throws: `ValidationError` naming a file that cannot be read and was never read before.
    func filter(for settings: FilterSettings) throws -> DomainListFilter {
        let blocklists = try settings.blocklists.map { try list(at: $0) }
        let allowlists = try settings.allowlists.map { try list(at: $0) }
        metrics.recordFilterLists(
            (blocklists + allowlists).map { ($0.name, $0.blocked.count + $0.allowed.count) },
            loadedAt: Date().timeIntervalSince1970
        )
        return DomainListFilter(
            blocklists: blocklists,
            allowlists: allowlists,
            action: settings.action,
            ttl: settings.ttl,
            localRecords: try settings.localRecords.map { try records(at: $0) }
        )
    }

    /// The local records in the file at `path`; an unreadable file at a reload keeps the copy before.
    private func records(at path: String) throws -> LocalRecords {
        guard let data = FileManager.default.contents(atPath: path) else {
            if let previous = loadedRecords.withLockedValue({ $0[path] }) {
                logger.error("local records unreadable, the previous copy is kept", metadata: ["file": "\(path)"])
                return previous
            }
            throw ValidationError("--local-records: cannot read \(path)")
        }
        let records = LocalRecords(parsing: String(decoding: data, as: UTF8.self))
        if records.rejectedLineCount > 0 {
            logger.warning(
                "local records lines skipped: not NAME TYPE VALUE, a hosts line or zone NAME",
                metadata: [
                    "file": "\(path)", "skipped": .stringConvertible(records.rejectedLineCount),
                    "first": .array(records.rejectedLines.map { .string("\(path):\($0.line): \($0.text)") }),
                ]
            )
        }
        metrics.recordFilterLists([("local-records", records.count)], loadedAt: Date().timeIntervalSince1970)
        loadedRecords.withLockedValue { $0[path] = records }
        return records
    }

    private func list(at path: String) throws -> DomainList {
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            if let previous = loaded.withLockedValue({ $0[path] }) {
                logger.error("filter list unreadable, the previous copy is kept", metadata: ["list": "\(path)"])
                return previous
            }
            throw ValidationError("--blocklist: cannot read \(path)")
        }
        let start = ContinuousClock.now
        let list = data.withUnsafeBytes { DomainList(parsing: $0, name: name) }
        let elapsed = ContinuousClock.now - start
        if list.rejectedLineCount > 0 {
            logger.warning(
                "filter list lines skipped: not a domain, hosts or ||domain^ rule",
                metadata: [
                    "list": "\(path)", "skipped": .stringConvertible(list.rejectedLineCount),
                    "first": .array(list.rejectedLines.map { .string("\(path):\($0.line): \($0.text)") }),
                ]
            )
        }
        logger.info(
            "filter list loaded",
            metadata: [
                "list": "\(path)", "blocked": .stringConvertible(list.blocked.count),
                "allowed": .stringConvertible(list.allowed.count), "took": "\(elapsed)",
            ]
        )
        loaded.withLockedValue { $0[path] = list }
        return list
    }
}
