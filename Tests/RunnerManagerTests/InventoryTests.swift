import Glibc
import Testing
import Shared
@testable import RunnerManager

/// The device readers against what a GPU cannot be made to produce on demand here: fixture sysfs
/// trees for zero, one and two AMD GPUs, a fake nvidia-smi script, /proc files; and the inventory
/// that merges them.
@Suite struct InventoryTests {
    static func tree() throws -> String { try makeTemporaryDirectory(prefix: "lr-inventory-") }

    static func write(_ path: String, _ text: String) {
        let dir = String(path[..<path.lastIndex(of: "/")!])
        _ = mkdirs(dir)
        let f = fopen(path, "w")!
        fputs(text, f)
        fclose(f)
    }

    static func mkdirs(_ path: String) -> Bool {
        var built = ""
        for part in path.split(separator: "/") {
            built += "/" + part
            mkdir(built, 0o755)
        }
        return true
    }

    /// An amdgpu card in `<root>/class/drm/cardN/device`.
    static func amdCard(_ root: String, card: Int, pci: String, totalMiB: Int, usedMiB: Int, busy: Int = 7, milliCelsius: Int = 45000, microWatts: Int = 31_000_000) {
        let dev = "\(root)/class/drm/card\(card)/device"
        write(dev + "/vendor", "0x1002\n")
        write(dev + "/device", "0x744c\n")
        write(dev + "/uevent", "DRIVER=amdgpu\nPCI_CLASS=30000\nPCI_SLOT_NAME=\(pci)\n")
        write(dev + "/mem_info_vram_total", "\(totalMiB << 20)\n")
        write(dev + "/mem_info_vram_used", "\(usedMiB << 20)\n")
        write(dev + "/gpu_busy_percent", "\(busy)\n")
        write(dev + "/hwmon/hwmon3/temp1_input", "\(milliCelsius)\n")
        write(dev + "/hwmon/hwmon3/power1_average", "\(microWatts)\n")
        // A connector entry beside the card, which is not a GPU.
        write("\(root)/class/drm/card\(card)-DP-1/status", "disconnected\n")
    }

    @Test func noGPUIsAnEmptyListNotAnError() throws {
        let root = try Self.tree()
        defer { removeTree(root) }
        #expect(try AMDSysfsReader(root: root).sample() == [])
        Self.write(root + "/class/drm/card0/device/vendor", "0x8086\n")  // an Intel iGPU: not ours
        #expect(try AMDSysfsReader(root: root).sample() == [])
    }

    @Test func twoAMDCardsKeyedByPCIAddressWithTheirSensors() throws {
        let root = try Self.tree()
        defer { removeTree(root) }
        Self.amdCard(root, card: 1, pci: "0000:0C:00.0", totalMiB: 16368, usedMiB: 1024)
        Self.amdCard(root, card: 0, pci: "0000:03:00.0", totalMiB: 24560, usedMiB: 560, busy: 99, milliCelsius: 71500, microWatts: 250_000_000)
        let devices = try AMDSysfsReader(root: root).sample()
        #expect(devices.map(\.id) == ["0000:03:00.0", "0000:0c:00.0"])
        let first = devices[0]
        #expect(first.kind == .amd && first.index == 0 && first.totalBytes == 24560 << 20 && first.usedBytes == 560 << 20)
        #expect(first.freeBytes == (24560 - 560) << 20)
        #expect(first.utilizationPercent == 99 && first.temperatureCelsius == 71.5 && first.powerWatts == 250)
        #expect(first.name == "AMD GPU 0x744c" && first.source == .sysfs)
    }

    static let smiOutput = """
    0, GPU-5a1b2c3d-0000-1111-2222-333344445555, NVIDIA GeForce RTX 4090, 00000000:01:00.0, 24564, 1200, 23010, 3, 41, 28.51
    1, GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff, NVIDIA GeForce RTX 3060, 00000000:2B:00.0, 12288, 300, 11700, [N/A], 35, [N/A]

    """

    @Test func nvidiaSMICSVIsParsedInBytesWithUnsupportedFieldsLeftOut() throws {
        let devices = try NvidiaSMIReader.parseGPUs(Self.smiOutput)
        #expect(devices.count == 2)
        #expect(devices[0].id == "GPU-5a1b2c3d-0000-1111-2222-333344445555" && devices[0].pciBusId == "0000:01:00.0")
        #expect(devices[0].totalBytes == 24564 << 20 && devices[0].usedBytes == 1200 << 20 && devices[0].freeBytes == 23010 << 20)
        #expect(devices[0].powerWatts == 28.51 && devices[0].temperatureCelsius == 41 && devices[0].utilizationPercent == 3)
        #expect(devices[1].pciBusId == "0000:2b:00.0" && devices[1].utilizationPercent == nil && devices[1].powerWatts == nil)
        #expect(throws: DeviceReaderError.self) { try NvidiaSMIReader.parseGPUs("No devices were found\n") }
        let apps = NvidiaSMIReader.parseApps("4242, GPU-5a1b2c3d-0000-1111-2222-333344445555, 812\n4242, GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff, 100\n")
        #expect(apps[4242]?["GPU-5a1b2c3d-0000-1111-2222-333344445555"] == 812 << 20)
    }

    /// A fake nvidia-smi: answers the query the reader makes (and nothing else), as the real one does.
    static func fakeSMI(_ dir: String, gpus: String, exit: Int = 0) -> String {
        let path = dir + "/nvidia-smi"
        write(path, """
        #!/bin/sh
        case "$1" in
          --query-gpu=\(NvidiaSMIReader.gpuFields)) printf '%s' '\(gpus)'; exit \(exit) ;;
          --query-compute-apps=*) echo "777, GPU-5a1b2c3d-0000-1111-2222-333344445555, 2048"; exit 0 ;;
          *) echo "unexpected arguments: $*" >&2; exit 2 ;;
        esac
        """)
        chmod(path, 0o755)
        return path
    }

    @Test func theInventoryMergesGPUsAndTheCPUAndReportsAFailingSource() async throws {
        let dir = try Self.tree()
        defer { removeTree(dir) }
        Self.amdCard(dir + "/sys", card: 0, pci: "0000:03:00.0", totalMiB: 8192, usedMiB: 0)
        let smi = Self.fakeSMI(dir, gpus: Self.smiOutput)
        let inventory = Inventory(readers: [NvidiaSMIReader(executable: smi), AMDSysfsReader(root: dir + "/sys"), SystemMemoryReader()])
        let info = await inventory.sample()
        #expect(info.devices.map(\.kind) == [.amd, .nvidia, .nvidia, .cpu])
        #expect(info.devices.last?.id == "cpu" && info.devices.last!.totalBytes > 0 && info.problems == [])
        #expect(inventory.processMemory[777] == ["GPU-5a1b2c3d-0000-1111-2222-333344445555": 2048 << 20])
        #expect(inventory.current == info)

        let broken = Self.fakeSMI(dir, gpus: "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.", exit: 9)
        let degraded = await Inventory(readers: [NvidiaSMIReader(executable: broken), SystemMemoryReader()]).sample()
        #expect(degraded.devices.map(\.id) == ["cpu"])
        #expect(degraded.problems.count == 1 && degraded.problems[0].contains("exited with code 9") && degraded.problems[0].contains("could not communicate"))
    }

    @Test func systemRAMComesFromMeminfoAndUtilisationFromTwoStatSamples() throws {
        let proc = try Self.tree()
        defer { removeTree(proc) }
        Self.write(proc + "/meminfo", "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    8192000 kB\n")
        Self.write(proc + "/cpuinfo", "processor\t: 0\nmodel name\t: Test CPU\nprocessor\t: 1\nmodel name\t: Test CPU\n")
        Self.write(proc + "/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n")
        let reader = SystemMemoryReader(procRoot: proc)
        let first = try reader.sample()[0]
        #expect(first.totalBytes == 16_384_000 * 1024 && first.freeBytes == 8_192_000 * 1024 && first.usedBytes == 8_192_000 * 1024)
        #expect(first.name == "Test CPU (2 threads)" && first.utilizationPercent == nil)
        Self.write(proc + "/stat", "cpu  250 0 150 900 0 0 0 0 0 0\n")  // +200 busy, +100 idle
        let second = try reader.sample()[0]
        #expect(abs((second.utilizationPercent ?? 0) - 200.0 / 300 * 100) < 0.01)
    }
}
