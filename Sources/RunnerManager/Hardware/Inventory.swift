import Glibc
import Shared
import Synchronization

/// runner-manager's view of the machine's devices: NVIDIA GPUs (NVML, else nvidia-smi), AMD GPUs
/// (sysfs) and system RAM, sampled every `hardware.sample_interval_seconds` on a queue of its own (the
/// readers block: files, a child process, a C library), never on the event loop. The latest sample is
/// kept and read without waiting. No GPU is the normal case: then the CPU is the only device.
final class Inventory: Sendable {
    private let readers: Mutex<[any DeviceReader]>
    private let latest: Mutex<HardwareInfo>
    private let processes = Mutex<[Int32: [String: Int]]>([:])
    private let queue = BlockingQueue(name: "hardware")

    init(readers: [any DeviceReader]) {
        self.readers = Mutex(readers)
        latest = Mutex(HardwareInfo(devices: [], sampledAt: 0))
    }

    /// The readers a config asks for: NVML when it loads (and `nvml` is on), otherwise nvidia-smi when
    /// it is found; AMD's sysfs; the system's RAM.
    static func readers(for config: AppConfig.Hardware) -> [any DeviceReader] {
        var out: [any DeviceReader] = []
        if config.nvml && NVMLReader.available {
            out.append(NVMLReader())
        } else if !config.nvidiaSMI.isEmpty, let smi = RuntimeLocator.locate(config.nvidiaSMI) {
            out.append(NvidiaSMIReader(executable: smi))
        }
        out.append(AMDSysfsReader(root: config.sysfsRoot))
        out.append(SystemMemoryReader())
        return out
    }

    func configure(_ config: AppConfig.Hardware) {
        let fresh = Self.readers(for: config)
        readers.withLock { current in
            // Keep stateful readers (the CPU's utilisation needs the previous sample) when unchanged.
            if current.map(\.name) != fresh.map(\.name) || !(current.last is SystemMemoryReader) { current = fresh }
            else { current = Array(fresh.dropLast()) + [current.last!] }
        }
    }

    var current: HardwareInfo { latest.withLock { $0 } }

    /// GPU memory by process and device, as of the last sample.
    var processMemory: [Int32: [String: Int]] { processes.withLock { $0 } }

    /// Reads every source once (off the loop) and keeps the result; a failing source is reported in
    /// `problems` and the others still count.
    @discardableResult
    func sample() async -> HardwareInfo {
        let readers = self.readers.withLock { $0 }
        let (info, perProcess) = await queue.run { () -> (HardwareInfo, [Int32: [String: Int]]) in
            var devices: [Device] = []
            var problems: [String] = []
            var perProcess: [Int32: [String: Int]] = [:]
            for reader in readers {
                do {
                    let found = try reader.sample()
                    devices += found
                    if found.contains(where: \.isGPU) {
                        for (pid, usage) in reader.processMemory() { perProcess[pid, default: [:]].merge(usage, uniquingKeysWith: +) }
                    }
                } catch {
                    problems.append("\(reader.name): \(error)")
                }
            }
            // GPUs in a stable order (kind, then the driver's index, then id); the CPU last.
            devices.sort { ($0.kind == .cpu ? 1 : 0, $0.kind.rawValue, $0.index ?? Int.max, $0.id) < ($1.kind == .cpu ? 1 : 0, $1.kind.rawValue, $1.index ?? Int.max, $1.id) }
            return (HardwareInfo(devices: devices, sampledAt: unixMillis(), problems: problems), perProcess)
        }
        latest.withLock { $0 = info }
        processes.withLock { $0 = perProcess }
        return info
    }
}
