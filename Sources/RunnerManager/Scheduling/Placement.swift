import Shared

/// Where a runner goes and what it needs there, decided before it starts: the GPUs it may use (the
/// entry's `devices`, else the GPU with the most free memory), how many layers it offloads (fewer
/// when not all fit in that GPU's free memory, unless the entry sets `n_gpu_layers` itself), the
/// per-device estimate the scheduler admits it by, and the environment that shows the runner only
/// those GPUs. Pure: devices in, a placement out; tested with fake devices.
struct Placement: Sendable, Equatable {
    /// The CPU's device id.
    static let cpu = "cpu"

    /// GPU ids in the order the runner's backend numbers them (`CUDA0` is the first); empty = CPU only.
    var gpus: [String]
    var kind: DeviceKind
    /// Parameters this placement (or a step of the out-of-memory ladder) sets over the model's own.
    var overrides: JSONObject
    var estimate: MemoryEstimate
    /// GPU vendors on the machine that a CPU runner must not see (their backends would offload).
    var hidden: [DeviceKind] = []

    /// Bytes on each device, for the scheduler.
    var memory: [String: Int] { estimate.devices.mapValues(\.total).filter { $0.value > 0 } }

    /// What the runner is started with: only its GPUs visible, numbered in PCI order like everything
    /// else here; none at all for a CPU runner on a machine with GPUs.
    var environment: [String: String] {
        switch kind {
        case .nvidia: ["CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": gpus.joined(separator: ",")]
        case .amd: ["HIP_VISIBLE_DEVICES": gpus.joined(separator: ","), "ROCR_VISIBLE_DEVICES": gpus.joined(separator: ",")]
        case .cpu:
            // An index that names no device hides every device (CUDA's and HIP's rule).
            Dictionary(uniqueKeysWithValues: hidden.map { $0 == .nvidia ? ("CUDA_VISIBLE_DEVICES", "-1") : ("HIP_VISIBLE_DEVICES", "-1") })
        }
    }

    /// The device id behind one of llama.cpp's backend names in the runner's log: `CUDA1` / `ROCm1` /
    /// `Vulkan1` → the second of `gpus`; `CPU`, `CUDA_Host` (pinned host memory) → the CPU.
    func deviceID(forBackend name: String) -> String {
        let digits = name.reversed().prefix { $0.isNumber }
        guard !digits.isEmpty, !name.hasSuffix("_Host"), let index = Int(String(digits.reversed())), index < gpus.count else { return Self.cpu }
        return gpus[index]
    }

    /// A runner's measured buffers (`BufferSizes`) by device id.
    func measuredByDevice(_ measured: MeasuredMemory) -> [String: Int] {
        var out: [String: Int] = [:]
        for (backend, bytes) in measured.devices { out[deviceID(forBackend: backend), default: 0] += bytes }
        return out
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case unknownDevice(model: String, device: String, present: [String])
        case mixedKinds(model: String)

        var description: String {
            switch self {
            case .unknownDevice(let m, let d, let present):
                "model \(m) names device \(d) in its devices, which is not present (devices here: \((present + [Placement.cpu]).joined(separator: ", ")))"
            case .mixedKinds(let m): "model \(m) names GPUs of two vendors in its devices: one runner uses one backend"
            }
        }
    }

    /// Whether two PCI addresses name one device: the domain in any width (nvidia-smi prints
    /// `00000000:2B:00.0`, sysfs `0000:2b:00.0`), the rest in either case.
    static func samePCI(_ a: String, _ b: String) -> Bool {
        func parts(_ s: String) -> (Int, String)? {
            let p = s.lowercased().split(separator: ":", maxSplits: 1)
            guard p.count == 2, let domain = Int(p[0], radix: 16) else { return nil }
            return (domain, String(p[1]))
        }
        guard let x = parts(a), let y = parts(b) else { return false }
        return x == y
    }

    /// - Parameters:
    ///   - devices: the inventory's latest sample.
    ///   - held: bytes this manager's own runners hold or are about to, by device, that the sample may
    ///     not show yet (a load that started after it).
    ///   - gpuReserve: `limits.gpu_overhead_bytes`, kept free on every GPU.
    ///   - overrides: parameters set over the model's (the ladder's steps), which the placement keeps.
    ///   - forceCPU: the ladder's last step (`allow_cpu_fallback`).
    static func place(_ model: ResolvedModel, devices: [Device], held: [String: Int] = [:], gpuReserve: Int = 0,
                      overrides: JSONObject = JSONObject(), forceCPU: Bool = false) throws(Failure) -> Placement {
        var parameters = model.parameters.objectValue ?? JSONObject()
        for (k, v) in overrides.entries { parameters[k] = v }
        let projector = model.mmproj.flatMap { FileStamp.of($0)?.size } ?? 0
        let gpus = devices.filter(\.isGPU)
        func cpuOnly() -> Placement {
            var cpuOverrides = overrides
            var hidden: [DeviceKind] = []
            for kind in [DeviceKind.nvidia, .amd] where gpus.contains(where: { $0.kind == kind }) { hidden.append(kind) }
            if !hidden.isEmpty && model.runtimeKind == .llamaServer { cpuOverrides["n_gpu_layers"] = .int(0) }
            var p = Placement(gpus: [], kind: .cpu, overrides: cpuOverrides,
                              estimate: MemoryEstimate.of(metadata: model.metadata, parameters: .object(parameters), gpus: [], projectorBytes: projector),
                              hidden: hidden)
            if model.runtimeKind == .whisperServer {
                // whisper-server: the file plus the process (ModelMemory's figure), on the CPU.
                var share = MemoryEstimate.Share()
                share.weights = FileStamp.of(model.path)?.size ?? 0
                share.overhead = ModelMemory.overhead
                p.estimate = MemoryEstimate(devices: [cpu: share], gpuLayers: 0, layers: 0, contextSize: 0)
            }
            return p
        }
        if model.runtimeKind == .whisperServer || forceCPU { return cpuOnly() }

        // The entry's own devices, by UUID or PCI address, in the order given.
        var chosen: [Device] = []
        if !model.devices.isEmpty {
            for name in model.devices {
                if name.lowercased() == cpu { continue }
                guard let d = gpus.first(where: { $0.id.lowercased() == name.lowercased() || $0.pciBusId.map { samePCI($0, name) } == true }) else {
                    throw .unknownDevice(model: model.id, device: name, present: gpus.map(\.id))
                }
                if !chosen.contains(d) { chosen.append(d) }
            }
            if chosen.isEmpty { return cpuOnly() }
            if Set(chosen.map(\.kind)).count > 1 { throw .mixedKinds(model: model.id) }
        } else {
            func room(_ d: Device) -> Int { d.freeBytes - (held[d.id] ?? 0) - gpuReserve }
            guard let best = gpus.max(by: { (room($0), $1.id) < (room($1), $0.id) }) else { return cpuOnly() }
            chosen = [best]
        }
        // When the entry does not fix the layer count, offload as many as fit the chosen GPUs' free memory.
        let explicit = ["n_gpu_layers", "ngl", "gpu_layers"].contains { parameters[$0] != nil }
        var estimate = MemoryEstimate.of(metadata: model.metadata, parameters: .object(parameters), gpus: chosen.map(\.id), projectorBytes: projector)
        var placed = overrides
        if !explicit && estimate.layers > 0 {
            let fits = { (e: MemoryEstimate) in chosen.allSatisfy { e.bytes(on: $0.id) <= $0.freeBytes - (held[$0.id] ?? 0) - gpuReserve } }
            var layers = estimate.gpuLayers
            while layers > 0 && !fits(estimate) {
                layers -= 1
                parameters["n_gpu_layers"] = .int(layers)
                estimate = MemoryEstimate.of(metadata: model.metadata, parameters: .object(parameters), gpus: chosen.map(\.id), projectorBytes: projector)
            }
            if layers < estimate.layers && layers > 0 { placed["n_gpu_layers"] = .int(layers) }
            if layers == 0 {
                // Not one layer fits the free memory now: all of them as asked, the scheduler evicts
                // for it, and the ladder takes over if the load still runs out.
                parameters["n_gpu_layers"] = nil
                estimate = MemoryEstimate.of(metadata: model.metadata, parameters: .object(parameters), gpus: chosen.map(\.id), projectorBytes: projector)
            }
        }
        return Placement(gpus: chosen.map(\.id), kind: chosen[0].kind, overrides: placed, estimate: estimate)
    }
}
