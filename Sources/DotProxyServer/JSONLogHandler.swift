import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes one JSON object per line to standard error, with stable keys:
/// `time` (ISO 8601, UTC, milliseconds), `level`, `label`, `message`, and the metadata, keys sorted:
/// numbers and booleans as JSON numbers and booleans, lists and dictionaries nested, the rest strings. Written without Foundation, so the server does not map it in.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?
    private let write: @Sendable (String) -> Void

    init(label: String, write: @escaping @Sendable (String) -> Void = Self.writeToStandardError) {
        self.label = label
        self.write = write
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = metadata.merging(metadataProvider?.get() ?? [:]) { _, new in new }
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        fields["time"] = .string(Self.timestamp())
        fields["level"] = .string(event.level.rawValue)
        fields["label"] = .string(label)
        fields["message"] = .string("\(event.message)")
        var line = ""
        Self.append(.dictionary(fields), to: &line)
        write(line)
    }

    /// Appends `value` as JSON: strings quoted, numbers and booleans logged as such
    /// (`.stringConvertible(count)`) bare, arrays and dictionaries (keys sorted) nested.
    static func append(_ value: Logger.MetadataValue, to line: inout String) {
        switch value {
        case .string(let text):
            appendQuoted(text, to: &line)
        case .stringConvertible(let convertible):
            switch convertible {
            case let flag as Bool: line += flag ? "true" : "false"
            case let integer as any BinaryInteger: line += "\(integer)"
            case let number as Double where number.isFinite: line += "\(number)"
            default: appendQuoted(convertible.description, to: &line)
            }
        case .array(let values):
            line += "["
            for (index, element) in values.enumerated() {
                if index > 0 { line += "," }
                append(element, to: &line)
            }
            line += "]"
        case .dictionary(let fields):
            line += "{"
            for (index, key) in fields.keys.sorted().enumerated() {
                if index > 0 { line += "," }
                appendQuoted(key, to: &line)
                line += ":"
                append(fields[key]!, to: &line)
            }
            line += "}"
        }
    }

    /// Appends `text` as a JSON string (RFC 8259 §7): quotes, backslashes and control characters
    /// escaped.
    static func appendQuoted(_ text: String, to line: inout String) {
        line.unicodeScalars.append("\"")
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                line += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: line.unicodeScalars.append(scalar)
            }
        }
        line.unicodeScalars.append("\"")
    }

    /// Now, as `2026-01-31T12:34:56.789Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }

    /// One `write(2)` per line, so lines from several threads never interleave.
    @Sendable static func writeToStandardError(_ line: String) {
        StandardError.write(line + "\n")
    }
}
