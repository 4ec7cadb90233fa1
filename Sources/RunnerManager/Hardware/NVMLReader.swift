import Glibc
import Shared

/// NVIDIA GPUs through NVML (`libnvidia-ml.so.1`, shipped with the driver), loaded at run time with
/// `dlopen`: no SDK, no link, so a machine without the driver runs everything and lists no NVIDIA GPU.
/// Only context-free calls are made (no CUDA context, which would cost hundreds of MiB per GPU). NVML's
/// index order can change across reboots: devices are keyed by UUID.
struct NVMLReader: DeviceReader {
    let name = "nvml"

    /// The functions used, resolved once; `nvmlInit_v2` called once (NVML is reference counted and the
    /// process keeps it to its end).
    struct Library: @unchecked Sendable {
        // @unchecked Sendable: C function pointers, immutable after loading; NVML is thread-safe.
        typealias Dev = OpaquePointer
        let errorString: @convention(c) (Int32) -> UnsafePointer<CChar>?
        let count: @convention(c) (UnsafeMutablePointer<UInt32>) -> Int32
        let handle: @convention(c) (UInt32, UnsafeMutablePointer<Dev?>) -> Int32
        let name: @convention(c) (Dev?, UnsafeMutablePointer<CChar>, UInt32) -> Int32
        let uuid: @convention(c) (Dev?, UnsafeMutablePointer<CChar>, UInt32) -> Int32
        let pciInfo: @convention(c) (Dev?, UnsafeMutableRawPointer) -> Int32
        let memory: @convention(c) (Dev?, UnsafeMutableRawPointer) -> Int32
        let utilization: @convention(c) (Dev?, UnsafeMutableRawPointer) -> Int32
        let temperature: @convention(c) (Dev?, Int32, UnsafeMutablePointer<UInt32>) -> Int32
        let power: @convention(c) (Dev?, UnsafeMutablePointer<UInt32>) -> Int32
        let processes: (@convention(c) (Dev?, UnsafeMutablePointer<UInt32>, UnsafeMutableRawPointer?) -> Int32)?
    }

    static let paths = ["/usr/lib/wsl/lib/libnvidia-ml.so.1", "libnvidia-ml.so.1", "libnvidia-ml.so"]
    static let success: Int32 = 0
    static let insufficientSize: Int32 = 7

    /// The library, or why it cannot be used (nil and nil: not installed, the normal case without NVIDIA).
    static let loaded: (library: Library?, error: String?) = {
        guard let lib = paths.lazy.compactMap({ dlopen($0, RTLD_NOW) }).first else { return (nil, nil) }
        struct Missing: Error { let name: String }
        func f<T>(_ name: String) throws -> T {
            guard let p = dlsym(lib, name) else { throw Missing(name: name) }
            return unsafeBitCast(p, to: T.self)
        }
        func optional<T>(_ names: [String]) -> T? {
            names.lazy.compactMap { dlsym(lib, $0) }.first.map { unsafeBitCast($0, to: T.self) }
        }
        do {
            let initialize: @convention(c) () -> Int32 = try f("nvmlInit_v2")
            let library = Library(
                errorString: try f("nvmlErrorString"), count: try f("nvmlDeviceGetCount_v2"), handle: try f("nvmlDeviceGetHandleByIndex_v2"),
                name: try f("nvmlDeviceGetName"), uuid: try f("nvmlDeviceGetUUID"), pciInfo: try f("nvmlDeviceGetPciInfo_v3"),
                memory: try f("nvmlDeviceGetMemoryInfo"), utilization: try f("nvmlDeviceGetUtilizationRates"),
                temperature: try f("nvmlDeviceGetTemperature"), power: try f("nvmlDeviceGetPowerUsage"),
                processes: optional(["nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"]))
            let status = initialize()
            guard status == success else {
                return (nil, "NVML did not initialise: \(library.errorString(status).map { String(cString: $0) } ?? "error \(status)")")
            }
            return (library, nil)
        } catch let missing as Missing {
            return (nil, "libnvidia-ml has no \(missing.name) (a driver older than NVML 11)")
        } catch {
            return (nil, "\(error)")
        }
    }()

    static var available: Bool { loaded.library != nil }

    func sample() throws(DeviceReaderError) -> [Device] {
        guard let nvml = Self.loaded.library else {
            if let error = Self.loaded.error { throw DeviceReaderError(description: error) }
            return []
        }
        var count: UInt32 = 0
        try check(nvml, nvml.count(&count), "nvmlDeviceGetCount")
        var devices: [Device] = []
        for i in 0..<count {
            var dev: OpaquePointer?
            // A device the user may not query (NO_PERMISSION) is counted but skipped.
            guard nvml.handle(i, &dev) == Self.success else { continue }
            let uuid = text(dev, nvml.uuid)
            guard !uuid.isEmpty else { continue }
            var mem = (UInt64(0), UInt64(0), UInt64(0))  // total, free, used
            guard withUnsafeMutableBytes(of: &mem, { nvml.memory(dev, $0.baseAddress!) }) == Self.success else { continue }
            var pci = [UInt8](repeating: 0, count: 68)  // busIdLegacy[16], 5 × u32, busId[32]
            let bus = pci.withUnsafeMutableBytes { nvml.pciInfo(dev, $0.baseAddress!) } == Self.success
                ? NvidiaSMIReader.normalizedBusId(String(cBuffer: pci[36..<68].map { CChar(bitPattern: $0) })) : nil
            var util = (UInt32(0), UInt32(0))
            let busy = withUnsafeMutableBytes(of: &util, { nvml.utilization(dev, $0.baseAddress!) }) == Self.success ? Double(util.0) : nil
            var celsius: UInt32 = 0
            let temperature = nvml.temperature(dev, 0, &celsius) == Self.success ? Double(celsius) : nil
            var milliwatts: UInt32 = 0
            let power = nvml.power(dev, &milliwatts) == Self.success ? Double(milliwatts) / 1000 : nil
            devices.append(Device(id: uuid, kind: .nvidia, name: text(dev, nvml.name), index: Int(i), pciBusId: bus,
                                  totalBytes: Int(mem.0), freeBytes: Int(mem.1), usedBytes: Int(mem.2),
                                  utilizationPercent: busy, temperatureCelsius: temperature, powerWatts: power, source: .nvml))
        }
        return devices
    }

    /// Per process, per device: `usedGpuMemory` of each compute process (graphics ones are not listed).
    func processMemory() -> [Int32: [String: Int]] {
        guard let nvml = Self.loaded.library, let list = nvml.processes else { return [:] }
        var count: UInt32 = 0
        guard nvml.count(&count) == Self.success else { return [:] }
        var out: [Int32: [String: Int]] = [:]
        for i in 0..<count {
            var dev: OpaquePointer?
            guard nvml.handle(i, &dev) == Self.success else { continue }
            let uuid = text(dev, nvml.uuid)
            var n: UInt32 = 0
            let first = list(dev, &n, nil)
            guard first == Self.insufficientSize, n > 0 else { continue }  // SUCCESS with 0: none
            n += 8  // processes may start between the two calls
            var entries = [UInt8](repeating: 0, count: Int(n) * 24)  // u32 pid, pad, u64 used, u32 gi, u32 ci
            guard entries.withUnsafeMutableBytes({ list(dev, &n, $0.baseAddress!) }) == Self.success else { continue }
            entries.withUnsafeBytes { raw in
                for k in 0..<Int(n) {
                    let pid = raw.loadUnaligned(fromByteOffset: k * 24, as: UInt32.self)
                    let used = raw.loadUnaligned(fromByteOffset: k * 24 + 8, as: UInt64.self)
                    guard used != UInt64.max else { continue }  // NVML_VALUE_NOT_AVAILABLE
                    out[Int32(bitPattern: pid), default: [:]][uuid, default: 0] += Int(used)
                }
            }
        }
        return out
    }

    func text(_ dev: OpaquePointer?, _ call: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>, UInt32) -> Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 96)
        guard buffer.withUnsafeMutableBufferPointer({ call(dev, $0.baseAddress!, 96) }) == Self.success else { return "" }
        return String(cBuffer: buffer)
    }

    func check(_ nvml: Library, _ status: Int32, _ what: String) throws(DeviceReaderError) {
        guard status != Self.success else { return }
        throw DeviceReaderError(description: "\(what) failed: \(nvml.errorString(status).map { String(cString: $0) } ?? "error \(status)")")
    }
}
