// swift-tools-version:6.1
//
// dotproxy: a DNS-over-TLS forwarding proxy. `DoTCore` is the embeddable library, `dotproxy` the
// command-line server. Layering follows ../shared/DESIGN.md: the wire format, cache and rate limiter
// need only NIOCore; sockets (NIOPosix) and GnuTLS stay behind the transport and server layers.
import PackageDescription

let package = Package(
    name: "dotproxy",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DoTCore", targets: ["DoTCore"]),
        .library(name: "DoTCoreTesting", targets: ["DoTCoreTesting"]),
        .library(name: "DoTRedisCache", targets: ["DoTRedisCache"]),
        // For the fuzz package (Fuzz/), which reaches the server's configuration reader; not an API.
        .library(name: "DotProxyServer", targets: ["DotProxyServer"]),
        .executable(name: "dotproxy", targets: ["dotproxy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
        // The configuration file: swift-configuration reads it; Yams, which it parses YAML with, gives
        // the line of each key for check-config's messages.
        .package(
            url: "https://github.com/apple/swift-configuration.git",
            from: "1.4.0",
            traits: [.defaults, "YAML"]
        ),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.5.0"),
    ],
    targets: [
        // GnuTLS, found through pkg-config. Only DoTCore's transport layer imports it, internally.
        .systemLibrary(
            name: "CGnuTLS",
            pkgConfig: "gnutls",
            providers: [.apt(["libgnutls28-dev"])]
        ),
        .target(
            name: "DoTCore",
            dependencies: [
                "CGnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // hiredis (Debian's libhiredis-dev): RESP parsing and command formatting for the Redis tier.
        // Its headers are in the default include path; its pkg-config file only adds a flag SwiftPM
        // refuses (-D_FILE_OFFSET_BITS=64), so it is not used.
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        // The second cache tier on Redis, beside DoTCore so that an embedder of DoTCore alone needs
        // no hiredis.
        .target(
            name: "DoTRedisCache",
            dependencies: [
                "DoTCore",
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "DoTCoreTesting",
            dependencies: [
                "DoTCore",
                "CGnuTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["make-test-certificates.sh"]
        ),
        // The server: the command line, the configuration file and its reload, metrics, logging, and
        // the composition of DoTCore's parts. A library so that tests and fuzz targets reach it; the
        // executable below is its `main`.
        .target(
            name: "DotProxyServer",
            dependencies: [
                "DoTCore",
                "DoTRedisCache",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "dotproxy",
            dependencies: ["DotProxyServer"],
            // mimalloc (Debian's libmimalloc-dev) replaces glibc's allocator in the server: each query
            // allocates and frees a few small objects, and glibc's small per-thread cache sends them to
            // its slow path (Docs/performance.md, "The allocator"). Only the executable links it; an
            // application that embeds DoTCore keeps its own allocator.
            linkerSettings: [.linkedLibrary("mimalloc", .when(platforms: [.linux]))]
        ),
        // Examples that embed DoTCore; they build with the package, so CI keeps them compiling.
        .executableTarget(
            name: "resolve",
            dependencies: [
                "DoTCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Examples/resolve"
        ),
        .executableTarget(
            name: "custom-cache",
            dependencies: [
                "DoTCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/custom-cache"
        ),
        .executableTarget(
            name: "type-filter",
            dependencies: [
                "DoTCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/type-filter"
        ),
        .executableTarget(
            name: "embedded-server",
            dependencies: [
                "DoTCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/embedded-server"
        ),
        .testTarget(
            name: "DoTCoreTests",
            dependencies: [
                "DoTCore",
                "DoTCoreTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "DoTRedisCacheTests",
            dependencies: [
                "DoTCore", "DoTCoreTesting", "DoTRedisCache",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "DoTCoreTestingTests",
            dependencies: [
                "DoTCore", "DoTCoreTesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "DotProxyServerTests",
            dependencies: [
                "DotProxyServer", "DoTCore", "DoTCoreTesting", "DoTRedisCache",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
