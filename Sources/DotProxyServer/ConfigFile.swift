import Configuration
import DoTCore
import NIOCore
import SystemPackage
import Yams

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A configuration file, read and checked: the settings it holds, the line each is on, and its
/// upstreams with their own TLS settings.
///
/// Values are read through swift-configuration (a `YAMLSnapshot` of the file's text, which also
/// reads JSON, a subset of YAML); the file's structure is walked with Yams first, for what a flat
/// key-value view cannot say: the line of each key, keys that are not settings (a typo must not pass
/// silently), keys given twice, and values of the wrong shape.
///
/// A setting becomes the command-line option it stands for (``ConfigFileSchema``) unless the command
/// line or the environment sets that option: flags, then `DOTPROXY_*` variables, then the file, then
/// the defaults. The option's own checks then apply, and their complaints are reported at the file's
/// line (``locate(_:)``).
struct ConfigFile: Sendable {
    /// One setting found in the file.
    struct Value: Sendable {
        let setting: ConfigFileSchema.Setting
        /// The values as the option takes them; for a flag, `true` or `false`.
        let values: [String]
        let line: Int
    }

    /// One upstream of the `upstreams` section.
    struct Upstream: Sendable {
        /// The key it is under; it names the upstream in logs and metrics.
        let name: String
        let line: Int
        let argument: UpstreamArgument
        /// Pins that replace the global `tls.pin-sha256` for this upstream.
        let pins: [SPKIPin]?
        /// A CA file that replaces the global `tls.ca-file` for this upstream.
        let caFile: String?
        let minimumVersion: TLSVersionArgument?
        /// The longest one attempt at this upstream may take, within the query's `timeout`.
        let timeout: TimeAmount?

        /// `shared`, the TLS settings of every upstream, with this upstream's own in their place.
        func tls(from shared: TLSClientConfiguration) -> TLSClientConfiguration {
            var tls = shared
            if let pins { tls.spkiPins = Set(pins) }
            if let caFile { tls.trustRoots = .pemFile(caFile) }
            if let minimumVersion { tls.minimumVersion = minimumVersion.version }
            return tls
        }
    }

    let path: String
    let values: [Value]
    let upstreams: [Upstream]
    /// The line of the `upstreams` key, if the file has one.
    let upstreamsLine: Int?

    /// Reads and checks the file at `path`.
    ///
    /// - Throws: ``ConfigFileError`` with every problem found, each with its line where it has one.
    static func load(path: String) throws(ConfigFileError) -> ConfigFile {
        let text = try readText(path)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ConfigFileError(path: path, problems: [yamlProblem(error)])
        }
        var walker = StructureWalker(path: path)
        guard let root else {
            return ConfigFile(path: path, values: [], upstreams: [], upstreamsLine: nil)
        }
        walker.walk(root)
        // The values are read even after a problem with the structure (an unknown key, say), so that
        // one run reports them all; only a file that swift-configuration cannot read stops here.
        var problems = walker.problems
        // From the text already read: the walk and the values come from the same bytes, even if the
        // file is rewritten meanwhile (a reload while an editor saves it).
        let reader: ConfigReader
        do {
            let snapshot = try YAMLSnapshot(
                data: Array(text.utf8).span.bytes,
                providerName: path,
                parsingOptions: .default
            )
            reader = ConfigReader(provider: SnapshotProvider(snapshot: snapshot))
        } catch {
            throw ConfigFileError(
                path: path,
                problems: problems.isEmpty ? [.init(line: nil, key: nil, reason: "\(error)")] : problems
            )
        }
        let values = walker.found.compactMap { found -> Value? in
            do {
                return Value(setting: found.setting, values: try read(found, from: reader), line: found.line)
            } catch {
                problems.append(.init(line: found.line, key: found.setting.key, reason: found.setting.kind.expected))
                return nil
            }
        }
        var upstreams: [Upstream] = []
        for found in walker.upstreams {
            do throws(ConfigFileError.Problem) {
                let upstream = try readUpstream(found, from: reader)
                if let earlier = upstreams.first(where: { $0.argument == upstream.argument }) {
                    throw ConfigFileError.Problem(
                        line: found.line,
                        key: "upstreams.\(found.name)",
                        reason: "\(upstream.argument) is already upstream \(earlier.name)"
                    )
                }
                upstreams.append(upstream)
            } catch {
                problems.append(error)
            }
        }
        guard problems.isEmpty else {
            throw ConfigFileError(path: path, problems: problems.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        return ConfigFile(path: path, values: values, upstreams: upstreams, upstreamsLine: walker.upstreamsLine)
    }

    /// The command-line arguments the file adds: one option per setting, and one `--upstream` per
    /// upstream, except for the options `isSetElsewhere` says the command line or the environment
    /// already sets.
    func arguments(skipping isSetElsewhere: (String) -> Bool) -> [String] {
        var arguments: [String] = []
        for value in values where !isSetElsewhere(value.setting.option) {
            let option = "--\(value.setting.option)"
            if case .flag = value.setting.kind {
                if value.values == ["true"] { arguments.append(option) }
            } else {
                for item in value.values { arguments += [option, item] }
            }
        }
        if !isSetElsewhere("upstream") {
            for upstream in upstreams { arguments += ["--upstream", upstream.argument.description] }
        }
        return arguments
    }

    /// `message`, a complaint about an option, said of the file key that set it, at its line; `nil`
    /// when no setting of this file is the option it names.
    ///
    /// The option the message starts with (`--redis-timeout: …`) wins over one it quotes later, and an
    /// option counts only whole: `--redis` is not named by `--redis-timeout`.
    func locate(_ message: String) -> ConfigFileError? {
        let mentions = values.compactMap { value in
            Self.range(ofOption: "--\(value.setting.option)", in: message).map { (value, $0) }
        }
        if let (value, range) = mentions.min(by: { $0.1.lowerBound < $1.1.lowerBound }) {
            var reason = String(message[range.upperBound...])
            // "--cache-size: 5 must be…" becomes "cache.size: 5 must be…"; a parser's message that
            // quotes the option is kept whole.
            if reason.hasPrefix(":") {
                reason = reason.dropFirst().trimmingCharacters(in: .whitespaces)
            } else {
                reason = message
            }
            return ConfigFileError(path: path, line: value.line, key: value.setting.key, reason)
        }
        if message.hasPrefix("--upstream:"), upstreamsLine != nil || upstreams.isEmpty {
            let reason = message.dropFirst("--upstream:".count).trimmingCharacters(in: .whitespaces)
            return ConfigFileError(path: path, line: upstreamsLine, key: ConfigFileSchema.upstreamsKey, reason)
        }
        return nil
    }

    /// Gives the upstreams that came from this file their names and TLS settings.
    func applyUpstreamSettings(to configuration: inout ProxyConfiguration) {
        for upstream in upstreams where configuration.upstreams.contains(upstream.argument) {
            configuration.upstreamSettings[upstream.argument] = upstream
        }
    }

    /// Where `option` first appears in `message` as a whole option, not as the start of a longer one.
    private static func range(ofOption option: String, in message: String) -> Range<String.Index>? {
        var rest = message.startIndex..<message.endIndex
        while let range = message.range(of: option, range: rest) {
            guard let next = message[range.upperBound...].first,
                next.isLetter || next.isNumber || next == "-"
            else { return range }
            rest = range.upperBound..<message.endIndex
        }
        return nil
    }

    /// The value of `--config` in `arguments`, if there is one.
    static func path(in arguments: [String]) -> String? {
        for (index, argument) in arguments.enumerated() {
            if argument == "--config", index + 1 < arguments.count { return arguments[index + 1] }
            if argument.hasPrefix("--config=") { return String(argument.dropFirst("--config=".count)) }
        }
        return nil
    }

    // MARK: Reading

    /// The largest configuration file read: 1 MiB, a thousand times the complete example.
    static let maximumSize = 1 << 20

    private static func readText(_ path: String) throws(ConfigFileError) -> String {
        func refuse(_ error: any Error) -> ConfigFileError {
            switch error as? Errno {
            case .noSuchFileOrDirectory?: ConfigFileError(path: path, "no such file")
            case .permissionDenied?: ConfigFileError(path: path, "cannot read it: permission denied")
            case .isDirectory?: ConfigFileError(path: path, "cannot read it (a directory?)")
            default: ConfigFileError(path: path, "cannot read it: \(error)")
            }
        }
        let bytes: [UInt8]
        do {
            let descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: .closeOnExec)
            defer { try? descriptor.close() }
            var read: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let count = try chunk.withUnsafeMutableBytes { try descriptor.read(into: $0) }
                if count == 0 { break }
                read += chunk[..<count]
                // /dev/zero, a log file named by mistake: said, not read until memory runs out.
                guard read.count <= maximumSize else {
                    throw ConfigFileError(
                        path: path,
                        "is larger than \(maximumSize >> 20) MiB: not a configuration file"
                    )
                }
            }
            bytes = read
        } catch let error as ConfigFileError {
            throw error
        } catch {
            throw refuse(error)
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigFileError(path: path, "is not UTF-8 text")
        }
        return text
    }

    private static func yamlProblem(_ error: any Error) -> ConfigFileError.Problem {
        switch error as? YamlError {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            return .init(line: mark.line, key: nil, reason: "not valid YAML: \(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            // The mark is the first of the keys given twice. An empty key (`"": 1` twice) is named so.
            let keys = duplicates.sorted().map { $0.isEmpty ? "an empty key" : $0 }
            return .init(
                line: context.mark.line,
                key: keys.joined(separator: ", "),
                reason: "given more than once, first here"
            )
        default:
            return .init(line: nil, key: nil, reason: "not valid YAML: \(error)")
        }
    }

    /// A value swift-configuration read but the setting's kind refuses; reported as the kind's
    /// ``ConfigFileSchema/Kind/expected``, as a value it could not read is.
    private struct NotOfItsKind: Error {}

    /// The setting's values as the option takes them.
    ///
    /// - Throws: When the value is not of the setting's kind.
    private static func read(_ found: StructureWalker.Found, from reader: ConfigReader) throws -> [String] {
        let key = ConfigKey(found.setting.key.split(separator: ".").map(String.init))
        switch found.setting.kind {
        case .text: return [try reader.requiredString(forKey: key)]
        case .choice(let type):
            let text = try reader.requiredString(forKey: key)
            guard type.init(argument: text) != nil else {
                throw NotOfItsKind()
            }
            return [text]
        case .integer: return [String(try reader.requiredInt(forKey: key))]
        case .number:
            let number = try reader.requiredDouble(forKey: key)
            guard number.isFinite else { throw NotOfItsKind() }
            return [String(number)]
        case .flag: return [String(try reader.requiredBool(forKey: key))]
        case .list:
            if found.isSequence { return try reader.requiredStringArray(forKey: key) }
            return [try reader.requiredString(forKey: key)]
        }
    }

    private static func readUpstream(
        _ found: StructureWalker.FoundUpstream,
        from reader: ConfigReader
    ) throws(ConfigFileError.Problem) -> Upstream {
        func problem(_ field: String, _ reason: String) -> ConfigFileError.Problem {
            .init(line: found.lines[field] ?? found.line, key: "upstreams.\(found.name).\(field)", reason: reason)
        }
        func string(_ field: String) throws(ConfigFileError.Problem) -> String? {
            guard found.lines[field] != nil else { return nil }
            do {
                return try reader.requiredString(forKey: ConfigKey(["upstreams", found.name, field]))
            } catch {
                throw problem(field, "must be a single value")
            }
        }
        guard var address = try string("address") else {
            throw ConfigFileError.Problem(
                line: found.line,
                key: "upstreams.\(found.name)",
                reason: "needs an address: IP, IP:PORT, [IPv6]:PORT or tls://HOSTNAME[:PORT]"
            )
        }
        if let name = try string("auth-name") {
            guard !address.contains("#") else {
                throw problem("auth-name", "the address already names one after #")
            }
            address += "#\(name)"
        }
        guard let argument = UpstreamArgument(argument: address) else {
            throw problem(
                "address",
                "\(address) is not IP, IP:PORT, [IPv6]:PORT or tls://HOSTNAME[:PORT], with an optional #auth-name"
            )
        }
        var pins: [SPKIPin]?
        if found.lines["pin-sha256"] != nil {
            let texts: [String]
            do {
                texts =
                    found.sequences.contains("pin-sha256")
                    ? try reader.requiredStringArray(forKey: ConfigKey(["upstreams", found.name, "pin-sha256"]))
                    : [try reader.requiredString(forKey: ConfigKey(["upstreams", found.name, "pin-sha256"]))]
            } catch {
                throw problem("pin-sha256", "must be a list of base64 SHA-256 digests")
            }
            pins = try texts.map { text throws(ConfigFileError.Problem) -> SPKIPin in
                guard let pin = SPKIPin(base64: text) else {
                    throw problem("pin-sha256", "\(text) is not a base64 SHA-256 digest (44 characters)")
                }
                return pin
            }
        }
        let caFile = try string("ca-file")
        if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw problem("ca-file", "cannot read \(caFile)")
        }
        var minimumVersion: TLSVersionArgument?
        if let text = try string("tls-min-version") {
            guard let version = TLSVersionArgument(argument: text) else {
                throw problem("tls-min-version", "\(text) is not 1.2 or 1.3")
            }
            minimumVersion = version
        }
        var timeout: TimeAmount?
        if found.lines["timeout"] != nil {
            let seconds: Double
            do {
                seconds = try reader.requiredDouble(forKey: ConfigKey(["upstreams", found.name, "timeout"]))
            } catch {
                throw problem("timeout", "must be a number of seconds")
            }
            guard seconds > 0, seconds <= 60 else {
                throw problem("timeout", "\(seconds) must be above 0 and at most 60 seconds")
            }
            timeout = .nanoseconds(Int64(seconds * 1e9))
        }
        return Upstream(
            name: found.name,
            line: found.line,
            argument: argument,
            pins: pins,
            caFile: caFile,
            minimumVersion: minimumVersion,
            timeout: timeout
        )
    }
}

extension ConfigFileSchema.Kind {
    /// What a value of this kind must be, for the message when it is not.
    var expected: String {
        switch self {
        case .text: "must be a single value"
        case .choice(let type): "must be one of \(type.allValueStrings.joined(separator: ", "))"
        case .integer: "must be a whole number"
        case .number: "must be a number"
        case .flag: "must be true or false"
        case .list: "must be a list of values, or one value"
        }
    }
}

/// swift-configuration's provider over one snapshot that never changes: the file as ``ConfigFile``
/// read it, so that reading it needs no second read of the file and no suspension.
private struct SnapshotProvider: ConfigProvider {
    let file: YAMLSnapshot

    init(snapshot: YAMLSnapshot) { self.file = snapshot }

    var providerName: String { file.providerName }

    func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try file.value(forKey: key, type: type)
    }

    func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try value(forKey: key, type: type)
    }

    nonisolated(nonsending) func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey,
        type: ConfigType,
        updatesHandler:
            nonisolated(nonsending) (
                _ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>
            ) async throws -> Return
    ) async throws -> Return {
        try await watchValueFromValue(forKey: key, type: type, updatesHandler: updatesHandler)
    }

    func snapshot() -> any ConfigSnapshot { file }

    nonisolated(nonsending) func watchSnapshot<Return: ~Copyable>(
        updatesHandler:
            nonisolated(nonsending) (
                _ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>
            ) async throws -> Return
    ) async throws -> Return {
        try await watchSnapshotFromSnapshot(updatesHandler: updatesHandler)
    }
}
