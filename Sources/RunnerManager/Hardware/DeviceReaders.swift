import Glibc
import Shared
import Synchronization

/// One place devices are read from. Every source is blocking (files, a child process, a C library)
/// and runs on the inventory's own queue, never on the event loop. `sample` answers the devices it
/// sees (none: no such hardware, a normal case) or throws when the source exists but fails.
protocol DeviceReader: Sendable {
    var name: String { get }
    func sample() throws(DeviceReaderError) -> [Device]
    /// GPU memory each process uses, by device id (NVML and nvidia-smi can tell; sysfs cannot).
    func processMemory() -> [Int32: [String: Int]]
}

extension DeviceReader {
    func processMemory() -> [Int32: [String: Int]] { [:] }
}

struct DeviceReaderError: Error, CustomStringConvertible {
    let description: String
}

// MARK: System RAM

/// The CPU and system RAM as a device of its own: MemTotal and MemAvailable from `/proc/meminfo`,
/// utilisation from `/proc/stat` between two samples.
final class SystemMemoryReader: DeviceReader {
    let name = "proc-meminfo"
    let procRoot: String
    private let lastCPU = Mutex<(busy: UInt64, total: UInt64)?>(nil)

    init(procRoot: String = "/proc") { self.procRoot = procRoot }

    func sample() throws(DeviceReaderError) -> [Device] {
        guard let text = readFile(procRoot + "/meminfo", maxBytes: 1 << 16) else { throw DeviceReaderError(description: "\(procRoot)/meminfo cannot be read") }
        let info = Self.meminfo(text)
        guard let total = info["MemTotal"] else { throw DeviceReaderError(description: "\(procRoot)/meminfo has no MemTotal") }
        let available = info["MemAvailable"] ?? (info["MemFree"] ?? 0) + (info["Cached"] ?? 0)
        return [Device(id: "cpu", kind: .cpu, name: Self.cpuName(procRoot: procRoot), totalBytes: total, freeBytes: available,
                       usedBytes: max(0, total - available), utilizationPercent: utilization(), source: .procMeminfo)]
    }

    /// `Key: value kB` lines, in bytes.
    static func meminfo(_ text: String) -> [String: Int] {
        var out: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " })
            guard parts.count >= 2, let value = Int(parts[1]) else { continue }
            out[String(parts[0])] = parts.count >= 3 && parts[2] == "kB" ? value * 1024 : value
        }
        return out
    }

    static func cpuName(procRoot: String) -> String {
        let text = readFile(procRoot + "/cpuinfo", maxBytes: 1 << 20) ?? ""
        let cores = text.split(separator: "\n").filter { $0.hasPrefix("processor") }.count
        let model = text.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { String($0).trimmed } ?? "CPU"
        return cores > 0 ? "\(model) (\(cores) threads)" : model
    }

    private func utilization() -> Double? {
        guard let stat = readFile(procRoot + "/stat", maxBytes: 1 << 16),
              let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard fields.count >= 5 else { return nil }
        let idle = fields[3] + fields[4]  // idle + iowait
        let total = fields.reduce(0, +)
        let now = (busy: total - idle, total: total)
        let before = lastCPU.withLock { last -> (busy: UInt64, total: UInt64)? in
            defer { last = now }
            return last
        }
        guard let before, now.total > before.total else { return nil }
        return Double(now.busy &- before.busy) / Double(now.total - before.total) * 100
    }
}

// MARK: nvidia-smi

/// `nvidia-smi --query-gpu`, when NVML cannot be loaded (a container with the tool but not the
/// library on the loader's path, or `hardware.nvml: false`). MiB and W, `[N/A]` where unsupported.
struct NvidiaSMIReader: DeviceReader {
    let name = "nvidia-smi"
    let executable: String

    static let gpuFields = "index,uuid,name,pci.bus_id,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,power.draw"
    static let appFields = "pid,gpu_uuid,used_memory"

    func sample() throws(DeviceReaderError) -> [Device] {
        let out = try Self.run(executable, ["--query-gpu=" + Self.gpuFields, "--format=csv,noheader,nounits"])
        return try Self.parseGPUs(out)
    }

    func processMemory() -> [Int32: [String: Int]] {
        guard let out = try? Self.run(executable, ["--query-compute-apps=" + Self.appFields, "--format=csv,noheader,nounits"]) else { return [:] }
        return Self.parseApps(out)
    }

    static func parseGPUs(_ csv: String) throws(DeviceReaderError) -> [Device] {
        var devices: [Device] = []
        for line in csv.split(separator: "\n") where !line.trimmed.isEmpty {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmed }
            guard f.count >= 7, let total = mib(f[4]) else { throw DeviceReaderError(description: "nvidia-smi printed a line it should not: \(line)") }
            let used = mib(f[5]) ?? 0
            devices.append(Device(id: f[1], kind: .nvidia, name: f[2], index: Int(f[0]), pciBusId: normalizedBusId(f[3]),
                                  totalBytes: total, freeBytes: mib(f[6]) ?? max(0, total - used), usedBytes: used,
                                  utilizationPercent: f.count > 7 ? Double(f[7]) : nil, temperatureCelsius: f.count > 8 ? Double(f[8]) : nil,
                                  powerWatts: f.count > 9 ? Double(f[9]) : nil, source: .nvidiaSMI))
        }
        return devices
    }

    static func parseApps(_ csv: String) -> [Int32: [String: Int]] {
        var out: [Int32: [String: Int]] = [:]
        for line in csv.split(separator: "\n") {
            let f = line.split(separator: ",").map { String($0).trimmed }
            guard f.count >= 3, let pid = Int32(f[0]), let bytes = mib(f[2]) else { continue }
            out[pid, default: [:]][f[1], default: 0] += bytes
        }
        return out
    }

    static func mib(_ s: String) -> Int? { Double(s).map { Int($0 * 1_048_576) } }

    /// `00000000:01:00.0` (nvidia-smi, NVML) → `0000:01:00.0` (sysfs, llama.cpp's log), lowercased.
    static func normalizedBusId(_ s: String) -> String? {
        let parts = s.lowercased().split(separator: ":")
        guard parts.count == 3 else { return s.isEmpty ? nil : s.lowercased() }
        let domain = String(parts[0].suffix(4))
        return "\(String(repeating: "0", count: max(0, 4 - domain.count)))\(domain):\(parts[1]):\(parts[2])"
    }

    /// Runs the tool with a 10 s limit, its output through a temporary file.
    static func run(_ executable: String, _ arguments: [String]) throws(DeviceReaderError) -> String {
        let path = "/tmp/llama-runner-smi-\(getpid())-\(monotonicNanos()).out"
        defer { unlink(path) }
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(executable, arguments: arguments, output: .file(path))
        } catch {
            throw DeviceReaderError(description: "\(executable) cannot be started: \(error)")
        }
        // The child's own reaper thread collects its status; this (blocking) queue waits for it.
        let deadline = monotonicNanos() + 10_000_000_000
        while child.isRunning {
            if monotonicNanos() > deadline {
                child.signal(SIGKILL)
                while child.isRunning { usleep(1000) }
                throw DeviceReaderError(description: "\(executable) did not answer within 10 s")
            }
            usleep(5000)
        }
        let text = readFile(path, maxBytes: 1 << 20) ?? ""
        guard case .exited(0) = child.exitStatus else {
            throw DeviceReaderError(description: "\(executable) failed (\(child.exitStatus.map { "\($0)" } ?? "?")): \(text.split(separator: "\n").first.map(String.init) ?? "")")
        }
        return text
    }
}

// MARK: AMD sysfs

/// AMD GPUs through the amdgpu driver's files: `<root>/class/drm/cardN/device/` with `vendor` 0x1002,
/// `mem_info_vram_total`/`_used` (bytes), `gpu_busy_percent`, `hwmon/*/temp1_input` (m°C) and
/// `power1_average` (µW). Keyed by PCI address (`cardN` numbering is not stable).
struct AMDSysfsReader: DeviceReader {
    let name = "sysfs"
    let root: String

    func sample() throws(DeviceReaderError) -> [Device] {
        let drm = root + "/class/drm"
        guard let cards = listDirectory(drm) else { return [] }
        var devices: [Device] = []
        for card in cards.sorted(by: Self.cardOrder) where card.hasPrefix("card") && !card.contains("-") {
            let dev = "\(drm)/\(card)/device"
            guard readFile(dev + "/vendor", maxBytes: 64)?.trimmed == "0x1002",
                  let total = number(dev + "/mem_info_vram_total") else { continue }
            let used = number(dev + "/mem_info_vram_used") ?? 0
            let pci = Self.pciAddress(dev)
            let hwmon = listDirectory(dev + "/hwmon")?.sorted().first.map { "\(dev)/hwmon/\($0)" }
            let name = readFile(dev + "/product_name", maxBytes: 256)?.trimmed
            devices.append(Device(id: pci ?? card, kind: .amd,
                                  name: name.flatMap { $0.isEmpty ? nil : $0 } ?? "AMD GPU \(readFile(dev + "/device", maxBytes: 64)?.trimmed ?? card)",
                                  index: Int(card.dropFirst(4)), pciBusId: pci, totalBytes: total, freeBytes: max(0, total - used), usedBytes: used,
                                  utilizationPercent: number(dev + "/gpu_busy_percent").map(Double.init),
                                  temperatureCelsius: hwmon.flatMap { number($0 + "/temp1_input") }.map { Double($0) / 1000 },
                                  powerWatts: hwmon.flatMap { number($0 + "/power1_average") }.map { Double($0) / 1_000_000 },
                                  source: .sysfs))
        }
        return devices
    }

    func number(_ path: String) -> Int? { readFile(path, maxBytes: 64).flatMap { Int($0.trimmed) } }

    /// `PCI_SLOT_NAME` from the device's uevent, else the last part of where `device` links to.
    static func pciAddress(_ dev: String) -> String? {
        if let uevent = readFile(dev + "/uevent", maxBytes: 4096),
           let line = uevent.split(separator: "\n").first(where: { $0.hasPrefix("PCI_SLOT_NAME=") }) {
            return String(line.dropFirst("PCI_SLOT_NAME=".count)).lowercased()
        }
        guard let real = realpath(dev, nil) else { return nil }
        defer { free(real) }
        let path = String(cString: real)
        return path.split(separator: "/").last.map { String($0).lowercased() }
    }

    static func cardOrder(_ a: String, _ b: String) -> Bool {
        (Int(a.dropFirst(4)) ?? Int.max, a) < (Int(b.dropFirst(4)) ?? Int.max, b)
    }
}

extension StringProtocol {
    /// Without surrounding spaces, tabs and newlines (sysfs files and CSV lines end in one).
    fileprivate var trimmed: String { String(self).trimmingCharacters(in: " \t\n\r") }
}
