// swift-tools-version:6.0
import PackageDescription

// Spool: a Redis-backed job system. Two binaries (spool-api, spool-worker) share
// one library (Shared) holding the key schema, the job codec, the Lua scripts and
// the Redis access layer. hiredis, libevent and OpenSSL come from Debian through
// thin system-library targets.
let package = Package(
    name: "Spool",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "spool-api", targets: ["API"]),
        .executable(name: "spool-worker", targets: ["Worker"]),
        .executable(name: "spool-bench", targets: ["Bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CHiredis",
            // No pkgConfig: hiredis' .pc adds -D_FILE_OFFSET_BITS=64, which makes
            // the C module's struct definitions clash with Glibc's in Swift.
            providers: [.apt(["libhiredis-dev"])]
        ),
        // OpenSSL 3 for SHA-256 (API tokens), random bytes and TLS. Already on
        // every Debian machine and linked by libevent's TLS bufferevents; see
        // the README (Security) for why not swift-crypto.
        .systemLibrary(
            name: "COpenSSL",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CLibevent",
            pkgConfig: "libevent_pthreads",
            providers: [.apt(["libevent-dev"])]
        ),
        .target(
            name: "Shared",
            dependencies: [
                "CHiredis", "CLibevent", "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // The API and the worker parse their few options themselves (see
        // Shared/Config/CommandLineOptions.swift for why); spool-bench, not a
        // production binary, keeps swift-argument-parser for its subcommands.
        .executableTarget(
            name: "API",
            dependencies: [
                "Shared", "CLibevent",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "Worker",
            dependencies: [
                "Shared",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "Bench",
            dependencies: [
                "Shared",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "SharedTests",
            dependencies: ["Shared"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
