import Testing
@testable import RunnerManager

/// Out-of-memory exits told apart from the others, on the log lines llama.cpp prints for each failure
/// mode (the reference's §2.4 excerpts).
@Suite struct LoadFailureTests {
    @Test func aCUDAAllocationFailureNamesTheDeviceAndTheSize() {
        let lines = ["ggml_backend_cuda_buffer_type_alloc_buffer: allocating 4403.49 MiB on device 1: cudaMalloc failed: out of memory",
                     "alloc_tensor_range: failed to allocate CUDA1 buffer of size 4617390080",
                     "llama_model_load: error loading model: unable to allocate CUDA1 buffer",
                     "srv    load_model: exiting due to model loading error"]
        #expect(LoadFailure.classify(lines) == .outOfMemory(device: "CUDA1", requestedMiB: 4403.49))
    }

    @Test func theKVCacheComputeBuffersVulkanAndROCmAreOutOfMemoryToo() {
        #expect(LoadFailure.classify(["llama_init_from_model: failed to allocate buffer for kv cache"]) == .outOfMemory(device: nil, requestedMiB: nil))
        #expect(LoadFailure.classify(["graph_reserve: failed to allocate compute pp buffers"]) == .outOfMemory(device: nil, requestedMiB: nil))
        #expect(LoadFailure.classify(["ggml_vulkan: Device memory allocation of size 2147483648 failed."]) == .outOfMemory(device: nil, requestedMiB: nil))
        #expect(LoadFailure.classify(["ROCm error: out of memory", "  current device: 0, in function alloc at ggml-cuda.cu:420"])
                == .outOfMemory(device: nil, requestedMiB: nil))
    }

    @Test func aBadArgumentAndAnUnrelatedCrashAreNot() {
        #expect(LoadFailure.classify(["error while handling argument \"--n-gpu-layers\": invalid value", "usage: ..."])
                == .invalidArgument("error while handling argument \"--n-gpu-layers\": invalid value"))
        #expect(LoadFailure.classify(["llama_model_load: error loading model: tensor 'blk.0.attn_q.weight' data is not within the file bounds"]) == .other)
        #expect(LoadFailure.classify([]) == .other)
    }
}
