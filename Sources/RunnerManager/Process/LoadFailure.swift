import Shared

/// Why a runner failed to load, told from its exit and its last log lines (the first step of the OOM
/// ladder: only an out-of-memory failure is worth retrying with less). llama.cpp exits 1 both for a
/// failed allocation and for a bad argument, so the log text decides; the needles are the ones Ollama
/// matches (`llm/status.go`), and the device comes from `allocating N MiB on device D` or `… CUDA0 buffer`.
enum LoadFailure: Equatable, Sendable {
    /// Memory ran out; `device` is llama.cpp's name for it (`CUDA0`, `ROCm1`, `Vulkan0`, `CPU`) when the
    /// log says, `requestedMiB` the allocation that failed when it says that.
    case outOfMemory(device: String?, requestedMiB: Double?)
    /// llama-server refused its command line.
    case invalidArgument(String)
    case other

    static let needles = ["out of memory", "out of device memory", "cudamalloc failed", "hipmalloc failed", "failed to allocate",
                          "unable to allocate", "allocation failed", "not enough memory", "vk_error_out_of_device_memory",
                          "erroroutofmemory", "device memory allocation of size"]

    static func classify(_ lines: [String]) -> LoadFailure {
        var oom = false
        var device: String?
        var requested: Double?
        for line in lines {
            let lower = line.lowercased()
            if lower.containsText("error while handling argument") || lower.containsText("invalid argument") {
                return .invalidArgument(line.trimmingCharacters(in: " \t"))
            }
            guard needles.contains(where: { lower.containsText($0) }) else { continue }
            oom = true
            // "allocating 4403.49 MiB on device 0: cudaMalloc failed: out of memory"
            if let (_, after) = line.splitOnce("allocating "), let (size, rest) = after.splitOnce(" MiB on device ") {
                requested = Double(size)
                if device == nil, let n = Int(rest.prefix { $0.isNumber }) { device = "CUDA\(n)" }
            }
            // "failed to allocate CUDA0 buffer", "unable to allocate CUDA0 buffer"
            for marker in ["failed to allocate ", "unable to allocate "] {
                if let (_, after) = line.splitOnce(marker), let (name, _) = after.splitOnce(" buffer"),
                   !name.isEmpty, !name.contains(" ") { device = name }
            }
        }
        return oom ? .outOfMemory(device: device, requestedMiB: requested) : .other
    }
}
