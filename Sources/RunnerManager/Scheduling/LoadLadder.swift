import Shared

/// What to try after a load ran out of memory, one step at a time and in this order: stop the idle
/// runners on the device that ran out; offload fewer layers (GPUs); a smaller context, down to the
/// entry's `min_ctx_size`; the CPU alone, when the entry allows it (`allow_cpu_fallback`). Each step
/// is sized from what the device has room for now (its free memory and its budget), so a step never
/// asks for more than the last. Pure: the failure, the placement and the room in, the next step out;
/// nil when nothing is left, and `error` then says what was needed, what was free and what was tried.
struct LoadLadder: Sendable {
    enum Step: Equatable, Sendable, CustomStringConvertible {
        case evictIdle(device: String)
        case fewerLayers(Int, of: Int, device: String)
        case smallerContext(Int, from: Int)
        case cpuFallback

        var description: String {
            switch self {
            case .evictIdle(let d): "stopping the idle runners on \(Self.name(d))"
            case .fewerLayers(let n, let total, let d): "offloading \(n) of \(total) layers to \(Self.name(d))"
            case .smallerContext(let n, let from): "a context of \(n) tokens instead of \(from)"
            case .cpuFallback: "the CPU only (allow_cpu_fallback)"
            }
        }

        static func name(_ device: String) -> String { device == Placement.cpu ? "system memory" : device }
    }

    /// Layer steps at most (each sized from the room, so more would only repeat a failure).
    static let maxLayerSteps = 3

    let model: ResolvedModel
    private(set) var tried: [Step] = []
    /// The device that last ran out, and what it needed there and had free.
    private(set) var lastDevice = Placement.cpu
    private(set) var lastNeeded = 0
    private(set) var lastRoom: Int?

    init(model: ResolvedModel) { self.model = model }

    /// - Parameters:
    ///   - placement: the placement that just failed (its estimate and overrides).
    ///   - idleOn: whether idle runners (evictable) use a device.
    ///   - room: bytes the device has for this runner now (free memory, within its budget), when known.
    mutating func next(after failure: LoadFailure, placement: Placement, idleOn: (String) -> Bool, room: (String) -> Int?) -> Step? {
        guard case .outOfMemory(let backend, _) = failure else { return nil }
        let device = backend.map(placement.deviceID(forBackend:)) ?? placement.gpus.first ?? Placement.cpu
        lastDevice = device
        lastNeeded = placement.estimate.bytes(on: device)
        lastRoom = room(device)
        let step = choose(device: device, placement: placement, idleOn: idleOn, room: lastRoom)
        if let step { tried.append(step) }
        return step
    }

    private func choose(device: String, placement: Placement, idleOn: (String) -> Bool, room: Int?) -> Step? {
        if !tried.contains(.evictIdle(device: device)) && idleOn(device) { return .evictIdle(device: device) }
        let estimate = placement.estimate
        // Fewer layers on the GPU that ran out: as many as its room holds, and fewer than last time.
        let layerSteps = tried.filter { if case .fewerLayers = $0 { true } else { false } }.count
        if device != Placement.cpu && estimate.gpuLayers > 1 && layerSteps < Self.maxLayerSteps {
            var n = estimate.gpuLayers / 2
            if let room {
                n = estimate.gpuLayers - 1
                while n > 1 && Self.estimate(model, placement, JSONObject([("n_gpu_layers", .int(n))])).bytes(on: device) > room { n -= 1 }
            }
            if n >= 1 { return .fewerLayers(n, of: estimate.layers, device: device) }
        }
        // A smaller context: what the room holds, at most half the last, never below min_ctx_size.
        if let floor = model.minContextSize, estimate.contextSize > floor {
            var n = max(floor, estimate.contextSize / 2)
            if let room {
                let kvPerToken = max(1, (estimate.devices[device]?.kvCache ?? 0) / max(1, estimate.contextSize))
                let other = estimate.bytes(on: device) - (estimate.devices[device]?.kvCache ?? 0)
                let fitting = room > other ? (room - other) / kvPerToken : 0
                n = max(floor, min(n, fitting / 256 * 256))
            }
            return .smallerContext(n, from: estimate.contextSize)
        }
        if model.allowCPUFallback && placement.kind != .cpu && !tried.contains(.cpuFallback) { return .cpuFallback }
        return nil
    }

    /// The parameters a step sets over the failed placement's.
    func overrides(for step: Step, after placement: Placement) -> JSONObject {
        var o = placement.overrides
        switch step {
        case .evictIdle: break
        case .fewerLayers(let n, _, _): o["n_gpu_layers"] = .int(n)
        case .smallerContext(let n, _): o["ctx_size"] = .int(n)
        case .cpuFallback: o["n_gpu_layers"] = .int(0)
        }
        return o
    }

    /// The final error once no step is left.
    func error(cause: String) -> String {
        var text = "model \(model.id) ran out of memory on \(Step.name(lastDevice)): it needs about \(ModelMemory.gigabytes(lastNeeded)) there"
        if let room = lastRoom { text += " and \(ModelMemory.gigabytes(max(0, room))) is free for it" }
        text += tried.isEmpty ? "; nothing else to try" : "; tried \(tried.map(\.description).joined(separator: ", then "))"
        var hints: [String] = []
        if model.minContextSize == nil { hints.append("set min_ctx_size to let its context shrink") }
        if !model.allowCPUFallback && lastDevice != Placement.cpu { hints.append("set allow_cpu_fallback to run it on the CPU") }
        if !hints.isEmpty { text += " (\(hints.joined(separator: "; ")))" }
        return text + (cause.isEmpty ? "" : ": " + cause)
    }

    static func estimate(_ model: ResolvedModel, _ placement: Placement, _ extra: JSONObject) -> MemoryEstimate {
        var parameters = model.parameters.objectValue ?? JSONObject()
        for (k, v) in placement.overrides.entries { parameters[k] = v }
        for (k, v) in extra.entries { parameters[k] = v }
        return MemoryEstimate.of(metadata: model.metadata, parameters: .object(parameters), gpus: placement.gpus)
    }
}
