// swift-tools-version:6.0
import PackageDescription

// The layout mirrors the architecture: a thin `drplan` executable over core libraries.
//   CEL          — the expression language: its value model, time types and calendar (later: parser, evaluator)
//   DRInventory  — scalars, cron schedules, the inventory model, YAML loading and validation
//   DRFacts      — facts derived from a validated inventory (copies, RPO, retention, RTO…)
//   DRPolicy     — policy files, the built-in catalog, load-time checks, findings
//   DRReports    — one file per report format (text, JSON, SARIF, JUnit, Markdown, HTML)
//   DRPlanning   — disaster scenarios, recovery waves and runbooks (`drplan plan`)
//   DRRuns       — backup engines, the builtin repository, the evidence store and its anchors
//   DREvidence   — what an auditor takes away: bundles, attestations, period figures, control tables, bundle verification
//   drplan       — the command line: parses flags, calls one core function, maps errors to exit codes
let package = Package(
    name: "drplan",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "drplan", targets: ["drplan"]),
        .library(name: "DRInventory", targets: ["DRInventory"]),
        .library(name: "DRFacts", targets: ["DRFacts"]),
        .library(name: "DRPolicy", targets: ["DRPolicy"]),
        .library(name: "DRReports", targets: ["DRReports"]),
        .library(name: "DRPlanning", targets: ["DRPlanning"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        .target(name: "DRInventory", dependencies: ["CEL", .product(name: "Yams", package: "Yams")]),
        .target(name: "CEL"),
        // The system's libzstd, for compressing repository objects (Debian: libzstd-dev).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "DRFacts", dependencies: ["DRInventory", "CEL"]),
        .target(
            name: "DRPolicy",
            dependencies: ["DRInventory", "DRFacts", "CEL", .product(name: "Yams", package: "Yams"), .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "DRReports",
            dependencies: ["DRPolicy", "DRFacts", "DRInventory", "CEL", .product(name: "Mustache", package: "swift-mustache"), .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(name: "DRPlanning", dependencies: [
            "DRFacts", "DRInventory", "CEL", .product(name: "Mustache", package: "swift-mustache"),
            .product(name: "HeapModule", package: "swift-collections"),
        ]),
        .target(
            name: "DRRuns",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"), .product(name: "ZIPFoundation", package: "ZIPFoundation"), "DRInventory", "DRFacts", "CEL", "CZstd",
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(name: "DRSchedule", dependencies: ["DRInventory", "CEL"]),
        .target(
            name: "DREvidence",
            dependencies: [
                "DRInventory", "DRFacts", "DRPolicy", "DRReports", "DRPlanning", "DRRuns", "CEL",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "ZIPFoundation", package: "ZIPFoundation"),
            ]
        ),
        .executableTarget(
            name: "drplan",
            dependencies: [
                "DRInventory", "DRFacts", "DRPolicy", "DRReports", "DRPlanning", "DRRuns", "DREvidence", "DRSchedule", "CEL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // Fuzz targets (docs/security.md): libFuzzer when built by scripts/fuzz.sh, a replaying
        // random mutator in an ordinary build.
        .target(name: "CFuzzShim", path: "Tests/Fuzz/Shim"),
        .executableTarget(name: "drplan-fuzz", dependencies: ["CFuzzShim", "CEL", "DRInventory", "DRPolicy", "DRRuns"], path: "Tests/Fuzz/Driver"),
        .testTarget(name: "DRInventoryTests", dependencies: ["DRInventory", "CEL", "TestSupport", .product(name: "Yams", package: "Yams")], exclude: ["Fixtures"]),
        .testTarget(name: "DRFactsTests", dependencies: ["DRFacts", "DRInventory", "CEL", "TestSupport"]),
        .testTarget(name: "CELTests", dependencies: ["CEL"]),
        .testTarget(name: "DRPolicyTests", dependencies: ["DRPolicy", "DRReports", "DRFacts", "DRInventory", "DRPlanning", "CEL", "TestSupport"]),
        .testTarget(name: "DRRunsTests", dependencies: ["DRRuns", "DRInventory", "DRFacts", "CEL", "TestSupport", .product(name: "Crypto", package: "swift-crypto"), .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "DRScheduleTests", dependencies: ["DRSchedule", "DRInventory", "CEL", "TestSupport"]),
        .testTarget(name: "DRPlanningTests", dependencies: ["DRPlanning", "DRInventory", "TestSupport"]),
        .testTarget(name: "DRReportsTests", dependencies: ["DRReports", "DRPolicy", "DRFacts", "DRInventory", "DRPlanning", "CEL", "TestSupport", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "CLITests", dependencies: ["drplan", "TestSupport"]),
        .testTarget(name: "DREvidenceTests", dependencies: ["DREvidence", "DRRuns", "DRPolicy", "DRInventory", "CEL", "TestSupport",
                                                            .product(name: "Crypto", package: "swift-crypto"), .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
    ],
    swiftLanguageModes: [.v6]
)
