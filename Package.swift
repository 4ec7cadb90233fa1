// swift-tools-version: 6.0
// Llama Runner: five executables and one shared library. No package dependencies, by the
// user's decision: Foundation(Essentials), Dispatch, Glibc, Synchronization and the test libraries are
// allowed. The executables use only Glibc, Synchronization and the standard library (each of the others
// cost about 1 MB of every process's memory: docs/ARCHITECTURE.md, "What each process links"); the tests
// use FoundationEssentials to hold JSONCoder to JSONEncoder/JSONDecoder.
import PackageDescription

let swift6: [SwiftSetting] = [.swiftLanguageMode(.v6)]
/// The services also leave out the implicit `_StringProcessing` import: no service uses Regex, and not
/// linking it keeps libswift_RegexParser and libswift_StringProcessing out of every process.
let service: [SwiftSetting] = swift6 + [.unsafeFlags(["-Xfrontend", "-disable-implicit-string-processing-module-import"])]

let package = Package(
    name: "LlamaRunner",
    products: [
        .executable(name: "launcher", targets: ["Launcher"]),
        .executable(name: "model-registry", targets: ["ModelRegistry"]),
        .executable(name: "runner-manager", targets: ["RunnerManager"]),
        .executable(name: "metrics-service", targets: ["MetricsService"]),
        .executable(name: "gateway", targets: ["Gateway"]),
        .library(name: "Shared", targets: ["Shared"]),
    ],
    targets: [
        .target(name: "Shared", path: "Sources/Shared", swiftSettings: service),
        .executableTarget(name: "Launcher", dependencies: ["Shared"], path: "Sources/Launcher", swiftSettings: service),
        .executableTarget(name: "ModelRegistry", dependencies: ["Shared"], path: "Sources/ModelRegistry", swiftSettings: service),
        .executableTarget(name: "RunnerManager", dependencies: ["Shared"], path: "Sources/RunnerManager", swiftSettings: service),
        .executableTarget(name: "MetricsService", dependencies: ["Shared"], path: "Sources/MetricsService", swiftSettings: service),
        .executableTarget(name: "Gateway", dependencies: ["Shared"], path: "Sources/Gateway", swiftSettings: service),
        .testTarget(name: "SharedTests", dependencies: ["Shared"], path: "Tests/SharedTests", swiftSettings: swift6),
        .testTarget(name: "ModelRegistryTests", dependencies: ["ModelRegistry", "Shared"], path: "Tests/ModelRegistryTests", swiftSettings: swift6),
        .testTarget(name: "RunnerManagerTests", dependencies: ["RunnerManager", "Shared"], path: "Tests/RunnerManagerTests", swiftSettings: swift6),
        .testTarget(name: "MetricsServiceTests", dependencies: ["MetricsService", "Shared"], path: "Tests/MetricsServiceTests", swiftSettings: swift6),
        .testTarget(name: "GatewayTests", dependencies: ["Gateway", "Shared"], path: "Tests/GatewayTests", swiftSettings: swift6),
        .testTarget(name: "LauncherTests", dependencies: ["Launcher", "Shared"], path: "Tests/LauncherTests", swiftSettings: swift6),
        .testTarget(
            name: "Integration",
            // Depends on the executables so `swift test` builds them; the tests spawn them from the build folder.
            dependencies: ["Shared", "Launcher", "ModelRegistry", "RunnerManager", "MetricsService", "Gateway"],
            path: "Tests/Integration", swiftSettings: swift6),
    ]
)
