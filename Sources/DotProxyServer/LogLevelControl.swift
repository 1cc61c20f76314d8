import Logging
import Synchronization

/// The level the whole process logs at: every handler reads it on each message, so a reload changes
/// it for every logger at once. An atomic, because loggers on every event loop read it.
final class LogLevelControl: Sendable {
    private let rawLevel: Atomic<UInt8>

    init(_ level: Logger.Level) {
        rawLevel = Atomic(Self.rawValue(of: level))
    }

    var level: Logger.Level {
        get { Logger.Level.allCases[Int(rawLevel.load(ordering: .relaxed))] }
        set { rawLevel.store(Self.rawValue(of: newValue), ordering: .relaxed) }
    }

    private static func rawValue(of level: Logger.Level) -> UInt8 {
        UInt8(Logger.Level.allCases.firstIndex(of: level) ?? 0)
    }
}

/// A log handler whose level is the process's (``LogLevelControl``), whatever the logger sets.
struct ControlledLogHandler: LogHandler {
    var base: any LogHandler
    let control: LogLevelControl

    var logLevel: Logger.Level {
        get { control.level }
        // A logger's own level would override the process's, which a reload could then not change.
        set {}
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { base.metadataProvider }
        set { base.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        base.log(event: event)
    }
}
