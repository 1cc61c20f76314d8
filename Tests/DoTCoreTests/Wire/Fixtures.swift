import Foundation
import NIOCore

/// Loads the captured packets in `Tests/DoTCoreTests/Fixtures/packets`.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/packets")

    static let names = [
        "a", "aaaa", "cname", "mx", "txt", "big-txt", "nxdomain", "nodata", "srv", "caa", "https",
        "unknown-type", "ptr", "root-ns", "dnssec-do", "no-edns", "padded", "cookie", "mixed-case",
    ]

    static func bytes(_ file: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: directory.appendingPathComponent(file)))
    }

    static func buffer(_ file: String) throws -> ByteBuffer {
        ByteBuffer(bytes: try bytes(file))
    }

    static func query(_ name: String) throws -> ByteBuffer { try buffer("\(name).query.bin") }
    static func response(_ name: String) throws -> ByteBuffer { try buffer("\(name).response.bin") }

    /// Every fixture file, queries and responses.
    static var allFiles: [String] { names.flatMap { ["\($0).query.bin", "\($0).response.bin"] } }
}
