// swift-tools-version:6.1
// The libFuzzer target for the DNS wire format. It lives in its own package because it is built with
// `-sanitize=fuzzer,address` and has no `main`; see Fuzz/run.sh.
import PackageDescription

let package = Package(
    name: "DoTFuzz",
    dependencies: [
        // run.sh links the repository root here as "dotproxy", so the package identity is stable
        // whatever the clone directory is called.
        .package(path: "dotproxy"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        .executableTarget(
            name: "WireFuzzer",
            dependencies: [
                .product(name: "DoTCore", package: "dotproxy"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ]
)
