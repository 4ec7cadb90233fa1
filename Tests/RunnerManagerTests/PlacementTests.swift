import Testing
import Shared
@testable import RunnerManager

/// Placement, admission by bytes per device and the out-of-memory ladder, on fake devices (no GPU
/// here): a model shaped like Llama-3.2-1B (16 layers of 40 MiB, 8 KV heads of 64, 32,768 bytes of
/// f16 KV cache per token).
@Suite struct PlacementTests {
    static let mib = 1 << 20, gib = 1 << 30

    static func gpu(_ id: String, index: Int, totalGiB: Int, freeMiB: Int, pci: String? = nil) -> Device {
        Device(id: id, kind: .nvidia, name: "Fake RTX", index: index, pciBusId: pci, totalBytes: totalGiB * gib, freeBytes: freeMiB * mib,
               usedBytes: totalGiB * gib - freeMiB * mib, source: .nvidiaSMI)
    }
    static let cpu = Device(id: "cpu", kind: .cpu, name: "CPU", totalBytes: 24 * gib, freeBytes: 20 * gib, usedBytes: 4 * gib, source: .procMeminfo)

    static func model(_ id: String = "llama", parameters: [(String, JSONValue)] = [("ctx_size", .int(4096))], devices: [String] = [],
                      minContext: Int? = nil, cpuFallback: Bool = false) -> ResolvedModel {
        let meta = ModelMetadata(architecture: "llama", name: nil, sizeLabel: "1B", parameterCount: 1_235_814_400, fileType: 15,
                                 quantization: "Q4_K_M", contextLength: 131_072, embeddingLength: 2048, blockCount: 16, headCount: 32,
                                 headCountKV: 8, keyLength: 64, valueLength: 64, hasChatTemplate: true, tokenizerModel: "gpt2",
                                 isEmbeddingModel: false, fileSize: 807 * mib, ggufVersion: 3,
                                 layerBytes: 16 * 40 * mib, dataBytes: 800 * mib, vocabularySize: 128_256)
        var m = ResolvedModel(id: id, aliases: [], displayName: nil, path: "/nonexistent/\(id).gguf", runtime: "llama-server", runtimeKind: .llamaServer,
                              runtimePath: "llama-server", parameters: .object(JSONObject(parameters)), kind: .chat, ttlSeconds: nil, unlisted: false,
                              mmproj: nil, autoDiscovered: false, autoUpdateModel: false, state: .available, error: nil, metadata: meta)
        m.devices = devices
        m.minContextSize = minContext
        m.allowCPUFallback = cpuFallback
        return m
    }

    // MARK: Placement

    @Test func theGPUWithTheMostFreeMemoryTakesItAndOnlyItIsVisible() throws {
        let devices = [Self.gpu("GPU-a", index: 0, totalGiB: 8, freeMiB: 3000), Self.gpu("GPU-b", index: 1, totalGiB: 8, freeMiB: 7000), Self.cpu]
        let p = try Placement.place(Self.model(), devices: devices)
        #expect(p.gpus == ["GPU-b"] && p.kind == .nvidia)
        #expect(p.environment == ["CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "GPU-b"])
        #expect(p.estimate.gpuLayers == 16 && p.overrides.isEmpty, "everything fits: no layer count imposed")
        #expect((p.memory["GPU-b"] ?? 0) > 800 * Self.mib && p.memory["GPU-a"] == nil)
        // What this manager's own loads already hold counts against a GPU the sample shows as free.
        let busy = try Placement.place(Self.model(), devices: devices, held: ["GPU-b": 5000 * Self.mib])
        #expect(busy.gpus == ["GPU-a"])
        // The reserve (limits.gpu_overhead_bytes) too.
        #expect(try Placement.place(Self.model(), devices: devices, gpuReserve: 4500 * Self.mib).gpus == ["GPU-b"])
    }

    @Test func layersThatDoNotFitTheFreeMemoryStayOnTheCPU() throws {
        // 900 MiB free: the CUDA context (457), compute and KV leave room for only some of the 16 layers.
        let p = try Placement.place(Self.model(), devices: [Self.gpu("GPU-a", index: 0, totalGiB: 2, freeMiB: 1300), Self.cpu])
        let layers = try #require(p.overrides["n_gpu_layers"]?.intValue)
        #expect(layers > 0 && layers < 16, "\(layers) layers")
        #expect(p.estimate.bytes(on: "GPU-a") <= 1300 * Self.mib)
        #expect(p.estimate.devices["cpu"]!.weights >= (16 - layers) * 40 * Self.mib)
        // An entry that sets n_gpu_layers itself is taken at its word.
        let fixed = try Placement.place(Self.model(parameters: [("ctx_size", .int(4096)), ("n_gpu_layers", .int(99))]),
                                        devices: [Self.gpu("GPU-a", index: 0, totalGiB: 2, freeMiB: 1300)])
        #expect(fixed.overrides.isEmpty && fixed.estimate.gpuLayers == 16)
    }

    @Test func anEntrysDevicesByUUIDOrPCIAddressInTheirOrder() throws {
        let devices = [Self.gpu("GPU-a", index: 0, totalGiB: 8, freeMiB: 7000, pci: "00000000:01:00.0"),
                       Self.gpu("GPU-b", index: 1, totalGiB: 8, freeMiB: 7000, pci: "00000000:02:00.0"), Self.cpu]
        let p = try Placement.place(Self.model(devices: ["00000000:02:00.0", "gpu-a"]), devices: devices)
        #expect(p.gpus == ["GPU-b", "GPU-a"] && p.environment["CUDA_VISIBLE_DEVICES"] == "GPU-b,GPU-a")
        // CUDA numbers the visible devices in that order: the log's CUDA0 is GPU-b.
        #expect(p.deviceID(forBackend: "CUDA0") == "GPU-b" && p.deviceID(forBackend: "CUDA1") == "GPU-a")
        #expect(p.deviceID(forBackend: "CPU") == "cpu" && p.deviceID(forBackend: "CUDA_Host") == "cpu")
        #expect(p.measuredByDevice(MeasuredMemory(devices: ["CUDA0": 100, "CUDA1": 50, "CPU": 7, "CUDA_Host": 3])) == ["GPU-b": 100, "GPU-a": 50, "cpu": 10])
        // Layers split between the two.
        #expect(p.estimate.bytes(on: "GPU-a") > 0 && p.estimate.bytes(on: "GPU-b") > 0)

        #expect(throws: Placement.Failure.unknownDevice(model: "llama", device: "GPU-zz", present: ["GPU-a", "GPU-b"])) {
            try Placement.place(Self.model(devices: ["GPU-zz"]), devices: devices)
        }
    }

    @Test func theCPUBesideGPUsSeesNone() throws {
        let devices = [Self.gpu("GPU-a", index: 0, totalGiB: 8, freeMiB: 7000), Self.cpu]
        let p = try Placement.place(Self.model(devices: ["cpu"]), devices: devices)
        #expect(p.gpus.isEmpty && p.kind == .cpu)
        #expect(p.environment == ["CUDA_VISIBLE_DEVICES": "-1"] && p.overrides["n_gpu_layers"] == .int(0))
        #expect(p.memory.keys.sorted() == ["cpu"])
        // No GPU at all: the CPU, with nothing hidden and nothing imposed.
        let alone = try Placement.place(Self.model(), devices: [Self.cpu])
        #expect(alone.gpus.isEmpty && alone.environment.isEmpty && alone.overrides.isEmpty)
    }

    // MARK: Admission by bytes, per device

    static func spec(_ id: String, _ memory: [String: Int], pinned: Bool = false) -> ModelSpec {
        ModelSpec(id: id, fingerprint: "f-\(id)", memory: memory, concurrency: 1, ttlSeconds: 300, pinned: pinned)
    }

    static func scheduler(maxLoaded: Int = 4) -> Scheduler {
        Scheduler(config: .init(maxLoaded: maxLoaded, budgetBytes: 16 * gib, deviceBudgets: ["GPU-a": 8 * gib, "GPU-b": 8 * gib], queueLimit: 8))
    }

    static func load(_ s: inout Scheduler, _ spec: ModelSpec, request: RequestID, now: Double) -> LeaseID? {
        let actions = s.acquire(request, spec: spec, keepAlive: nil, now: now)
        guard actions.contains(.start(spec)) else { return nil }
        for case .grant(_, _, let lease) in s.started(spec.id, now: now) { return lease }
        return nil
    }

    @Test func modelsOnTwoGPUsRunSideBySideAndAThirdEvictsOnlyOnItsOwnGPU() throws {
        var s = Self.scheduler()
        let a = Self.spec("a", ["GPU-a": 6 * Self.gib, "cpu": Self.gib])
        let b = Self.spec("b", ["GPU-b": 6 * Self.gib, "cpu": Self.gib])
        let la = try #require(Self.load(&s, a, request: 1, now: 0))
        let lb = try #require(Self.load(&s, b, request: 2, now: 1), "b fits on the other GPU beside a")
        _ = s.release(la, now: 2)
        _ = s.release(lb, now: 3)
        // c needs 4 GiB on GPU-b: b (idle, and used more recently than a) goes; a, on GPU-a, stays.
        let c = Self.spec("c", ["GPU-b": 4 * Self.gib, "cpu": Self.gib])
        let actions = s.acquire(3, spec: c, keepAlive: nil, now: 4)
        #expect(actions == [.stop(model: "b", reason: .evicted)])
        #expect(s.runners["a"]?.phase == .ready)
        #expect(s.exited("b", reason: "", now: 5).contains(.start(c)))
    }

    @Test func aPinnedModelIsNeverEvictedAndTheRefusalNamesTheDevice() throws {
        var s = Self.scheduler()
        let p = Self.spec("p", ["GPU-a": 6 * Self.gib], pinned: true)
        let lp = try #require(Self.load(&s, p, request: 1, now: 0))
        _ = s.release(lp, now: 1)
        let big = Self.spec("big", ["GPU-a": 4 * Self.gib])
        let actions = s.acquire(2, spec: big, keepAlive: nil, now: 2)
        guard case .reject(2, .wontFit(let model, let reason))? = actions.first else {
            Issue.record("expected a refusal, got \(actions)")
            return
        }
        #expect(model == "big" && reason.contains("pinned models p") && reason.contains("GPU-a") && reason.contains("8 GB budget"), "\(reason)")
        #expect(s.runners["p"]?.phase == .ready)
    }

    @Test func aBusyRunnerOnTheShortGPUIsWaitedForNotStopped() throws {
        var s = Self.scheduler()
        let a = Self.spec("a", ["GPU-a": 6 * Self.gib])
        _ = try #require(Self.load(&s, a, request: 1, now: 0))
        let idleOther = Self.spec("o", ["GPU-b": 6 * Self.gib])
        let lo = try #require(Self.load(&s, idleOther, request: 2, now: 1))
        _ = s.release(lo, now: 2)
        // b needs GPU-a, where a is busy: the idle runner on GPU-b is no help and stays.
        #expect(s.acquire(3, spec: Self.spec("b", ["GPU-a": 4 * Self.gib]), keepAlive: nil, now: 3).isEmpty)
        #expect(s.runners["o"]?.phase == .ready)
    }

    @Test func measuredFiguresReplaceTheEstimate() throws {
        var s = Self.scheduler()
        let a = Self.spec("a", ["GPU-a": 7 * Self.gib])
        let la = try #require(Self.load(&s, a, request: 1, now: 0))
        // llama-server reported 3 GiB: b's 4 GiB now fits beside it.
        _ = s.measured("a", memory: ["GPU-a": 3 * Self.gib], now: 1)
        let b = Self.spec("b", ["GPU-a": 4 * Self.gib])
        #expect(s.acquire(2, spec: b, keepAlive: nil, now: 2).contains(.start(b)))
        _ = la
    }

    // MARK: The out-of-memory ladder

    static let cudaOOM = LoadFailure.classify([
        "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1200.00 MiB on device 0: cudaMalloc failed: out of memory",
        "alloc_tensor_range: failed to allocate CUDA0 buffer of size 1258291200",
    ])

    @Test func theStepsComeInOrderAndTheLastErrorSaysWhatWasTried() throws {
        let model = Self.model(minContext: 1024, cpuFallback: true)
        var placement = try Placement.place(model, devices: [Self.gpu("GPU-a", index: 0, totalGiB: 8, freeMiB: 7000)])
        var ladder = LoadLadder(model: model)
        var steps: [LoadLadder.Step] = []
        var idle = true
        let room = 1100 * Self.mib
        while let step = ladder.next(after: Self.cudaOOM, placement: placement, idleOn: { $0 == "GPU-a" && idle }, room: { _ in room }) {
            steps.append(step)
            if case .evictIdle = step { idle = false; continue }
            placement = try Placement.place(model, devices: [Self.gpu("GPU-a", index: 0, totalGiB: 8, freeMiB: 7000)],
                                            overrides: ladder.overrides(for: step, after: placement), forceCPU: step == .cpuFallback)
            #expect(steps.count < 12, "the ladder ends")
            if steps.count >= 12 { break }
        }
        // 1. the idle runners on that GPU; 2. fewer layers, sized to the room, each fewer than the last;
        // 3. smaller contexts down to min_ctx_size; 4. the CPU.
        #expect(steps.first == .evictIdle(device: "GPU-a"))
        let layers = steps.compactMap { if case .fewerLayers(let n, 16, "GPU-a") = $0 { n } else { nil } }
        #expect(!layers.isEmpty && layers.count <= LoadLadder.maxLayerSteps && layers == layers.sorted(by: >), "\(steps)")
        let contexts = steps.compactMap { if case .smallerContext(let n, _) = $0 { n } else { nil } }
        #expect(contexts.last == 1024 && contexts == contexts.sorted(by: >) && contexts.allSatisfy { $0 < 4096 }, "\(steps)")
        #expect(steps.last == .cpuFallback)
        let order = steps.map { step -> Int in
            switch step { case .evictIdle: 0; case .fewerLayers: 1; case .smallerContext: 2; case .cpuFallback: 3 }
        }
        #expect(order == order.sorted(), "\(steps)")
        let error = ladder.error(cause: "")
        // The last try ran on the CPU, so the error names the CPU's memory.
        #expect(error.contains("model llama ran out of memory on system memory") && error.contains("1.1 GB is free"), "\(error)")
        #expect(error.contains("stopping the idle runners on GPU-a, then offloading") && error.contains("the CPU only"), "\(error)")
    }

    @Test func withoutMinContextOrFallbackTheLadderStopsAndSaysWhatToSet() throws {
        let model = Self.model()
        let placement = try Placement.place(model, devices: [Self.gpu("GPU-a", index: 0, totalGiB: 8, freeMiB: 7000)])
        var ladder = LoadLadder(model: model)
        var steps: [LoadLadder.Step] = []
        var current = placement
        while let step = ladder.next(after: Self.cudaOOM, placement: current, idleOn: { _ in false }, room: { _ in 600 * Self.mib }) {
            steps.append(step)
            current = try Placement.place(model, devices: [Self.gpu("GPU-a", index: 0, totalGiB: 8, freeMiB: 7000)],
                                          overrides: ladder.overrides(for: step, after: current))
            if steps.count > 5 { break }
        }
        #expect(steps.allSatisfy { if case .fewerLayers = $0 { true } else { false } } && !steps.isEmpty, "\(steps)")
        let error = ladder.error(cause: "")
        #expect(error.contains("set min_ctx_size") && error.contains("set allow_cpu_fallback"), "\(error)")
        // Not an out-of-memory failure: no ladder at all.
        var other = LoadLadder(model: model)
        #expect(other.next(after: .invalidArgument("bad"), placement: placement, idleOn: { _ in true }, room: { _ in nil }) == nil)
    }

    @Test func onTheCPUTheContextShrinksToWhatTheRoomHolds() throws {
        // The real failure this machine produces (tests/Python/test_hardware.py runs it): 2M tokens of KV cache.
        let lines = ["E ggml_aligned_malloc: insufficient memory (attempted to allocate 46080.00 MB)",
                     "E ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 48318382080",
                     "E ggml_backend_buft_alloc_buffer_n_default: failed to allocate CPU buffer of size 48318382080",
                     "E llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache"]
        let failure = LoadFailure.classify(lines)
        #expect(failure == .outOfMemory(device: "CPU", requestedMiB: nil))
        let model = Self.model(parameters: [("ctx_size", .int(2_097_152))], minContext: 4096)
        let placement = try Placement.place(model, devices: [Self.cpu])
        var ladder = LoadLadder(model: model)
        let step = ladder.next(after: failure, placement: placement, idleOn: { _ in false }, room: { _ in 3 * Self.gib })
        guard case .smallerContext(let n, from: 2_097_152)? = step else {
            Issue.record("expected a smaller context, got \(String(describing: step))")
            return
        }
        let after = try Placement.place(model, devices: [Self.cpu], overrides: ladder.overrides(for: step!, after: placement))
        #expect(n > 4096 && n % 256 == 0 && after.estimate.bytes(on: "cpu") <= 3 * Self.gib, "\(n) tokens: \(after.estimate.bytes(on: "cpu"))")
    }
}
