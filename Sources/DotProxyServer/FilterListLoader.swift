import ArgumentParser
import DoTCore
import Logging
import NIOConcurrencyHelpers

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

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
        let blocklists = try settings.blocklists.map { try list(at: $0, option: "blocklist") }
        let allowlists = try settings.allowlists.map { try list(at: $0, option: "allowlist") }
        let localRecords = try settings.localRecords.map { path in
            try read(path, option: "local-records", into: loadedRecords) { bytes in
                let records = LocalRecords(parsing: String(decoding: bytes, as: UTF8.self))
                return (records, records.rejectedLineCount, records.rejectedLines)
            }
        }
        metrics.recordFilterLists(
            (blocklists + allowlists).map { ($0.name, $0.blocked.count + $0.allowed.count) }
                + (localRecords.map { [("local-records", $0.count)] } ?? []),
            loadedAt: Date().timeIntervalSince1970
        )
        return DomainListFilter(
            blocklists: blocklists,
            allowlists: allowlists,
            action: settings.action,
            ttl: settings.ttl,
            localRecords: localRecords
        )
    }

    private func list(at path: String, option: String) throws -> DomainList {
        let name = URL(fileURLWithPath: path).lastPathComponent
        let start = ContinuousClock.now
        let list = try read(path, option: option, into: loaded) { bytes in
            let list = DomainList(parsing: bytes, name: name)
            return (list, list.rejectedLineCount, list.rejectedLines)
        }
        logger.info(
            "filter list loaded",
            metadata: [
                "list": "\(path)", "blocked": .stringConvertible(list.blocked.count),
                "allowed": .stringConvertible(list.allowed.count), "took": "\(ContinuousClock.now - start)",
            ]
        )
        return list
    }

    /// The file at `path` parsed, kept in `readBefore`; an unreadable file keeps the copy read before,
    /// and without one is an error naming `--option`. The lines `parse` could not read are logged.
    private func read<Parsed: Sendable>(
        _ path: String,
        option: String,
        into readBefore: NIOLockedValueBox<[String: Parsed]>,
        parse: (UnsafeRawBufferPointer) -> (Parsed, rejected: Int, first: [(line: Int, text: String)])
    ) throws -> Parsed {
        guard let data = FileManager.default.contents(atPath: path) else {
            if let previous = readBefore.withLockedValue({ $0[path] }) {
                logger.error("--\(option) unreadable, the copy read before is kept", metadata: ["file": "\(path)"])
                return previous
            }
            throw ValidationError("--\(option): cannot read \(path)")
        }
        let (parsed, rejected, first) = data.withUnsafeBytes { parse($0) }
        if rejected > 0 {
            logger.warning(
                "--\(option) lines skipped: they are not entries of a format it reads",
                metadata: [
                    "file": "\(path)", "skipped": .stringConvertible(rejected),
                    "first": .array(first.map { .string("\(path):\($0.line): \($0.text)") }),
                ]
            )
        }
        readBefore.withLockedValue { $0[path] = parsed }
        return parsed
    }
}
