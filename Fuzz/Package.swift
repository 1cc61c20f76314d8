// swift-tools-version:6.1
// The libFuzzer targets: the DNS wire format, a DoT connection's reply path, the query pipeline, the
// filter and local-records lists, and the configuration file. It lives in its own package because it
// is built with `-sanitize=fuzzer,address` and has no `main`; see Fuzz/run.sh.
import PackageDescription

let package = Package(
    name: "DoTFuzz",
    dependencies: [
        // run.sh links the repository root here as "dotproxy", so the package identity is stable
        // whatever the clone directory is called.
        .package(path: "dotproxy"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
    ],
    targets: [
        .executableTarget(
            name: "WireFuzzer",
            dependencies: [
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        // The next two reach DoTCore's internals (the connection, the TCP handler) with @testable, so
        // Fuzz/run.sh builds with -enable-testing.
        .executableTarget(
            name: "DoTReplyFuzzer",
            dependencies: [
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "PipelineFuzzer",
            dependencies: [
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        .executableTarget(
            name: "ListFuzzer",
            dependencies: [
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        // The configuration file as a start reads it; the server's types are internal, reached with
        // @testable as the reply and pipeline targets reach DoTCore's.
        .executableTarget(
            name: "ConfigFuzzer",
            dependencies: [
                .product(name: "DotProxyServer", package: "dotproxy"),
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
