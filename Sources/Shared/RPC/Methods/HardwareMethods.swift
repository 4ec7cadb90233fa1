/// What kind of memory a device has: where a runner's weights, KV cache and compute buffers can go.
public enum DeviceKind: String, Codable, Sendable, CaseIterable {
    /// An NVIDIA GPU (NVML, or `nvidia-smi`).
    case nvidia
    /// An AMD GPU (the amdgpu driver's sysfs files).
    case amd
    /// The CPU and system RAM: always present, what a runner without GPU offload uses.
    case cpu
}

/// Where a device's figures came from.
public enum DeviceSource: String, Codable, Sendable {
    case nvml
    case nvidiaSMI = "nvidia-smi"
    case sysfs
    case procMeminfo = "proc-meminfo"
}

/// One device as runner-manager samples it (every 2 s, off the event loop). `id` is stable across
/// reboots and re-enumeration: an NVIDIA GPU's UUID (`GPU-…`, `MIG-…`), an AMD GPU's PCI address,
/// `cpu` for system RAM. `index` is the driver's own order, for display only.
public struct Device: Codable, Sendable, Equatable {
    public var id: String
    public var kind: DeviceKind
    public var name: String
    public var index: Int?
    /// `0000:01:00.0` form, when known.
    public var pciBusId: String?
    public var totalBytes: Int
    public var freeBytes: Int
    public var usedBytes: Int
    /// Percent busy over the last sample period.
    public var utilizationPercent: Double?
    public var temperatureCelsius: Double?
    public var powerWatts: Double?
    public var source: DeviceSource

    public init(id: String, kind: DeviceKind, name: String, index: Int? = nil, pciBusId: String? = nil, totalBytes: Int, freeBytes: Int,
                usedBytes: Int, utilizationPercent: Double? = nil, temperatureCelsius: Double? = nil, powerWatts: Double? = nil, source: DeviceSource) {
        self.id = id
        self.kind = kind
        self.name = name
        self.index = index
        self.pciBusId = pciBusId
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
        self.usedBytes = usedBytes
        self.utilizationPercent = utilizationPercent
        self.temperatureCelsius = temperatureCelsius
        self.powerWatts = powerWatts
        self.source = source
    }

    public var isGPU: Bool { kind != .cpu }
}

/// `runners.hardware`: every device, the CPU last, with when it was sampled and what could not be read.
public struct HardwareInfo: Codable, Sendable, Equatable {
    public var devices: [Device]
    /// Unix time in milliseconds of the sample.
    public var sampledAt: Int
    /// Sources that were tried and failed, with why (no GPU at all is not a failure: nothing is listed).
    public var problems: [String]

    public init(devices: [Device], sampledAt: Int, problems: [String] = []) {
        self.devices = devices
        self.sampledAt = sampledAt
        self.problems = problems
    }

    public var gpus: [Device] { devices.filter(\.isGPU) }
}

extension RunnersRPC {
    /// The devices runner-manager knows, as last sampled.
    public enum Hardware: RPCMethod {
        public typealias Params = Empty
        public typealias Result = HardwareInfo
        public static let name = "runners.hardware"
    }
}

/// What a loaded llama-server reported allocating (its `… buffer size = X MiB` log lines), by llama.cpp
/// backend buffer (`CPU`, `CUDA0`, `ROCm1`, `Vulkan0`; `_Mapped`/`_REPACK` folded into their device, a
/// `*_Host` pinned buffer counted as host memory) and by kind (`model`, `KV`, `compute`, `output`, `RS`).
public struct MeasuredMemory: Codable, Sendable, Equatable {
    /// Bytes by backend device name.
    public var devices: [String: Int]
    /// Bytes by kind, all devices together.
    public var kinds: [String: Int]
    /// `offloaded N/M layers to GPU`, when the log said it.
    public var offloadedLayers: Int?
    public var layers: Int?

    public init(devices: [String: Int] = [:], kinds: [String: Int] = [:], offloadedLayers: Int? = nil, layers: Int? = nil) {
        self.devices = devices
        self.kinds = kinds
        self.offloadedLayers = offloadedLayers
        self.layers = layers
    }

    /// A backend buffer name is host memory when it is the CPU's, BLAS's or a pinned `*_Host` buffer.
    public static func isHost(_ device: String) -> Bool {
        device.hasPrefix("CPU") || device == "BLAS" || device.hasSuffix("_Host")
    }

    public var gpuBytes: Int { devices.filter { !Self.isHost($0.key) }.values.reduce(0, +) }
    public var hostBytes: Int { devices.filter { Self.isHost($0.key) }.values.reduce(0, +) }
    public var totalBytes: Int { devices.values.reduce(0, +) }
}
