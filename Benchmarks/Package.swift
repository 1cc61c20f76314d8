// swift-tools-version:6.1
// Micro benchmarks for DoTCore (ordo-one/package-benchmark). Run with `make bench` from the repository
// root, which links the root as ./dotproxy so that the package identity does not depend on the clone's
// directory name. The end-to-end load benchmark lives in e2e/.
import PackageDescription

let package = Package(
    name: "DoTBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: "dotproxy"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(
            url: "https://github.com/ordo-one/package-benchmark.git",
            from: "1.38.0",
            traits: ["MallocInterposer"]
        ),
    ],
    targets: [
        .executableTarget(
            name: "WireBenchmarks",
            dependencies: [
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/WireBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        // Load generator for Benchmarks/transport/run.sh: pipelined queries through DoTUpstreamTransport.
        .executableTarget(
            name: "TransportLoad",
            dependencies: [
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/TransportLoad"
        ),
    ]
)
