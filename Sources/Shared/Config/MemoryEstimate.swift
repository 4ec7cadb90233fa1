/// What a llama-server runner will take on each device before it runs, from the GGUF's metadata and the
/// load parameters: weights by layer for the layers offloaded (`--n-gpu-layers`), the rest of the
/// weights (embeddings, output) with the CPU unless every layer is offloaded, the KV cache at the
/// requested context and cache types (on the GPU for offloaded layers unless `no_kv_offload`), compute
/// buffers, the projector on the first GPU, and an overhead per device. Replaced by llama-server's own
/// figures once it has loaded (its buffer-size log lines). Pure: tested without a GPU.
public struct MemoryEstimate: Codable, Sendable, Equatable {
    /// One device's share.
    public struct Share: Codable, Sendable, Equatable {
        public var weights = 0
        public var kvCache = 0
        public var compute = 0
        public var projector = 0
        public var overhead = 0
        public var total: Int { weights + kvCache + compute + projector + overhead }
        public init() {}
    }

    /// By device id (`cpu`, or a GPU's UUID / PCI address).
    public var devices: [String: Share]
    /// Layers on GPUs (0 on CPU only).
    public var gpuLayers: Int
    public var layers: Int
    /// The context it was sized for (all slots together).
    public var contextSize: Int

    public init(devices: [String: Share], gpuLayers: Int, layers: Int, contextSize: Int) {
        self.devices = devices
        self.gpuLayers = gpuLayers
        self.layers = layers
        self.contextSize = contextSize
    }

    public var total: Int { devices.values.reduce(0) { $0 + $1.total } }
    public func bytes(on device: String) -> Int { devices[device]?.total ?? 0 }

    /// The CPU process itself (and whisper's): beyond weights, KV cache and compute buffers.
    public static let processOverhead = 128 << 20
    /// Reserved per GPU a runner uses (a CUDA context and its workspace; Ollama reserves 457 MiB), unless
    /// `limits.gpu_overhead_bytes` says otherwise.
    public static let defaultGPUOverhead = 457 << 20

    /// Bytes per element of a KV cache type (`cache_type_k`/`cache_type_v`), ggml's block sizes.
    public static func kvBytesPerElement(_ type: String?) -> Double {
        switch (type ?? "f16").lowercased() {
        case "f32": 4
        case "f16", "bf16": 2
        case "q8_0": 34.0 / 32
        case "q5_0": 22.0 / 32
        case "q5_1": 24.0 / 32
        case "q4_0", "iq4_nl": 18.0 / 32
        case "q4_1": 20.0 / 32
        default: 2
        }
    }

    /// Layers the parameters ask to offload: `n_gpu_layers` (or `ngl`, `gpu_layers`); a number, or
    /// `auto`/`all`/absent/negative = every layer.
    public static func requestedGPULayers(_ parameters: JSONValue, layers: Int) -> Int {
        let value = parameters["n_gpu_layers"] ?? parameters["ngl"] ?? parameters["gpu_layers"]
        if let n = value?.intValue { return n < 0 ? layers : min(n, layers) }
        return layers
    }

    /// The context the runner is started with: `ctx_size` (or `c`) when positive, else the model's
    /// training context (llama-server's default), else 4096.
    public static func contextSize(_ metadata: ModelMetadata?, _ parameters: JSONValue) -> Int {
        let requested = parameters["ctx_size"]?.intValue ?? parameters["c"]?.intValue ?? 0
        return requested > 0 ? requested : (metadata?.contextLength ?? 4096)
    }

    /// - Parameters:
    ///   - gpus: the GPUs it would use, in order (the first takes the projector and the output); empty = CPU only.
    ///   - projectorBytes: the mmproj file's size, if any.
    public static func of(metadata: ModelMetadata?, parameters: JSONValue, gpus: [String], projectorBytes: Int = 0,
                          gpuOverhead: Int = defaultGPUOverhead) -> MemoryEstimate {
        var cpu = Share()
        cpu.overhead = processOverhead
        guard let meta = metadata else {
            return MemoryEstimate(devices: ["cpu": cpu], gpuLayers: 0, layers: 0, contextSize: contextSize(nil, parameters))
        }
        let layers = max(0, meta.blockCount ?? 0)
        let context = contextSize(meta, parameters)
        let data = meta.dataBytes ?? meta.fileSize
        // Without tensor offsets (an old metadata cache), nine tenths of the file counted as layers.
        let layerTotal = min(data, meta.layerBytes ?? data * 9 / 10)
        let rest = data - layerTotal
        let perLayer = layers > 0 ? layerTotal / layers : 0
        let offloaded = gpus.isEmpty || layers == 0 ? 0 : requestedGPULayers(parameters, layers: layers)

        // KV cache per layer: context × KV heads × (key + value length) × bytes per element.
        let heads = meta.headCount ?? 1
        let kvHeads = meta.headCountKV ?? heads
        let keyLength = meta.keyLength ?? ((meta.embeddingLength ?? 0) / max(1, heads))
        let valueLength = meta.valueLength ?? keyLength
        let kvLayer = Int(Double(context * kvHeads) * (Double(keyLength) * kvBytesPerElement(parameters["cache_type_k"]?.stringValue)
                                                      + Double(valueLength) * kvBytesPerElement(parameters["cache_type_v"]?.stringValue)))
        let kvOnGPU = parameters["no_kv_offload"]?.boolValue != true && parameters["nkvo"]?.boolValue != true

        // Compute buffers (Ollama's graph size for llama-like models): the larger of attention scratch
        // and the logits of one micro-batch.
        let batch = parameters["ubatch_size"]?.intValue ?? parameters["ub"]?.intValue ?? 512
        let embedding = meta.embeddingLength ?? 0
        let vocabulary = meta.vocabularySize ?? 32_000
        let compute = max(4 * batch * (1 + 4 * embedding + min(context, 8192) * (1 + heads)), 4 * batch * (embedding + vocabulary))

        var devices: [String: Share] = [:]
        if offloaded == 0 {
            cpu.weights = data
            cpu.kvCache = kvLayer * layers
            cpu.compute = compute
            cpu.projector = projectorBytes
        } else {
            // Layers split evenly across the GPUs given, the earlier ones taking the remainder.
            let perGPU = offloaded / gpus.count, extra = offloaded % gpus.count
            for (i, id) in gpus.enumerated() {
                var s = Share()
                let n = perGPU + (i < extra ? 1 : 0)
                s.weights = n * perLayer
                s.kvCache = kvOnGPU ? n * kvLayer : 0
                s.compute = compute
                s.overhead = gpuOverhead
                if i == 0 {
                    s.projector = projectorBytes
                    if offloaded == layers { s.weights += rest }
                }
                devices[id] = s
            }
            cpu.weights = (layers - offloaded) * perLayer + (offloaded == layers ? 0 : rest)
            cpu.kvCache = kvLayer * (kvOnGPU ? layers - offloaded : layers)
            // The host keeps a buffer for the logits it reads back.
            cpu.compute = 4 * batch * vocabulary
        }
        devices["cpu"] = cpu
        return MemoryEstimate(devices: devices, gpuLayers: offloaded, layers: layers, contextSize: context)
    }
}
