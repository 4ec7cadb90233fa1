import Testing
@testable import Shared

/// The per-device estimate, on a model shaped like Llama-3.2-1B (16 layers, 8 KV heads of 64, 2048
/// wide, 128,256 tokens): weights by layer, KV cache by context and cache type, where each part goes.
@Suite struct MemoryEstimateTests {
    static let mib = 1 << 20
    static func p(_ pairs: (String, JSONValue)...) -> JSONValue { .object(JSONObject(pairs)) }
    static let meta = ModelMetadata(architecture: "llama", name: nil, sizeLabel: "1B", parameterCount: 1_235_814_400, fileType: 15,
                                    quantization: "Q4_K_M", contextLength: 131_072, embeddingLength: 2048, blockCount: 16, headCount: 32,
                                    headCountKV: 8, keyLength: 64, valueLength: 64, hasChatTemplate: true, tokenizerModel: "gpt2",
                                    isEmbeddingModel: false, fileSize: 807 * mib, ggufVersion: 3,
                                    layerBytes: 16 * 40 * mib, dataBytes: 800 * mib, vocabularySize: 128_256)

    @Test func theKVCacheFollowsTheContextAndTheCacheType() {
        // 32,768 bytes per token at f16 (16 layers × 8 heads × 128 × 2 bytes), the figure measured for this model.
        let f16 = MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("ctx_size", .int(4096))), gpus: [])
        #expect(f16.devices["cpu"]?.kvCache == 4096 * 32_768)
        let q8 = MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("ctx_size", .int(4096)), ("cache_type_k", .string("q8_0")), ("cache_type_v", .string("q8_0"))), gpus: [])
        #expect(q8.devices["cpu"]?.kvCache == 4096 * 32_768 * 34 / 64)
        // No ctx_size: llama-server's default, the training context.
        #expect(MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(), gpus: []).contextSize == 131_072)
    }

    @Test func cpuOnlyHoldsEverythingInRAM() {
        let e = MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("ctx_size", .int(4096))), gpus: [], projectorBytes: 10 * Self.mib)
        #expect(Array(e.devices.keys) == ["cpu"] && e.gpuLayers == 0)
        let cpu = e.devices["cpu"]!
        #expect(cpu.weights == 800 * Self.mib && cpu.projector == 10 * Self.mib && cpu.overhead == MemoryEstimate.processOverhead)
        // The larger of the attention scratch (micro-batch × context × heads) and one micro-batch's logits.
        #expect(cpu.compute == max(4 * 512 * (1 + 4 * 2048 + 4096 * 33), 4 * 512 * (2048 + 128_256)))
        #expect(cpu.compute == 293_603_328)
        #expect(e.total == cpu.total)
    }

    @Test func offloadedLayersTheirKVAndTheOutputGoToTheGPU() {
        let all = MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("ctx_size", .int(4096))), gpus: ["GPU-a"], projectorBytes: 10 * Self.mib,
                                    gpuOverhead: 400 * Self.mib)
        let gpu = all.devices["GPU-a"]!
        #expect(all.gpuLayers == 16 && gpu.weights == 800 * Self.mib && gpu.kvCache == 4096 * 32_768)
        #expect(gpu.projector == 10 * Self.mib && gpu.overhead == 400 * Self.mib)
        #expect(all.devices["cpu"]!.weights == 0 && all.devices["cpu"]!.kvCache == 0)

        // Half the layers: half the layer weights and KV on the GPU; embeddings and output stay on the CPU.
        let half = MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("ctx_size", .int(4096)), ("n_gpu_layers", .int(8))), gpus: ["GPU-a"])
        #expect(half.gpuLayers == 8 && half.devices["GPU-a"]!.weights == 8 * 40 * Self.mib)
        #expect(half.devices["cpu"]!.weights == 8 * 40 * Self.mib + 160 * Self.mib)
        #expect(half.devices["GPU-a"]!.kvCache == half.devices["cpu"]!.kvCache)

        // KV kept in host memory.
        let nkvo = MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("ctx_size", .int(4096)), ("no_kv_offload", .bool(true))), gpus: ["GPU-a"])
        #expect(nkvo.devices["GPU-a"]!.kvCache == 0 && nkvo.devices["cpu"]!.kvCache == 4096 * 32_768)
        // ngl 0 with a GPU given: nothing goes there.
        #expect(MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("n_gpu_layers", .int(0))), gpus: ["GPU-a"]).devices.keys.sorted() == ["cpu"])
    }

    @Test func layersSplitAcrossTheGPUsGiven() {
        let e = MemoryEstimate.of(metadata: Self.meta, parameters: Self.p(("ctx_size", .int(2048)), ("n_gpu_layers", .int(15))), gpus: ["GPU-a", "GPU-b"])
        #expect(e.devices["GPU-a"]!.weights == 8 * 40 * Self.mib && e.devices["GPU-b"]!.weights == 7 * 40 * Self.mib)
        #expect(e.devices["GPU-b"]!.projector == 0 && e.devices["GPU-a"]!.overhead == e.devices["GPU-b"]!.overhead)
        #expect(e.bytes(on: "GPU-c") == 0)
    }
}
