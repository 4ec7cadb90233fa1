import Glibc
import Shared
import Synchronization

/// LM Studio's clients speak of model *instances*: an identifier, a reference, a TTL and the load
/// settings it runs with. Here each model has at most one runner, so an instance is a model's ready
/// runner, named by the model id — or by the identifier a client loaded it under — and this table
/// keeps what LM Studio clients asked for at load (identifier, settings, TTL) for as long as that
/// runner lives. The gateway forgets an entry when runner-manager reports the runner ended, so a
/// later load starts clean.
final class LMStudioInstances: Sendable {
    /// What a client asked for when it loaded a model through an LM Studio surface.
    struct Loaded: Sendable, Equatable {
        var identifier: String
        /// The load settings as runner parameters (over the model's own); the same ones must be sent
        /// with every request to that instance, or runner-manager would start a runner with others.
        var parameters: JSONValue?
        /// Idle seconds before it unloads (nil: the model's TTL).
        var ttlSeconds: Double?
        /// When it was loaded (Unix ms).
        var loadedAt: Int
    }

    /// A ready runner as LM Studio sees it.
    struct Instance: Sendable {
        let model: ResolvedModel
        let runner: RunnerInfo
        let loaded: Loaded?
        var identifier: String { loaded?.identifier ?? model.id }
        /// Stable while the runner lives: derived from the model and its process.
        var reference: String { LMStudioInstances.reference(model: model.id, pid: runner.pid) }
        /// The context the runner was started with.
        var contextLength: Int { runner.contextLength ?? LMStudioModelInfo.configuredContext(model) }
        /// Parameters every request to this instance must carry (see `Loaded.parameters`).
        var parameters: JSONValue? { LMStudioInstances.parameters(model, loaded: loaded, runningContext: runner.contextLength) }
    }

    private let loads = Mutex<[String: Loaded]>([:])

    init() {}

    /// Records a load made through an LM Studio surface.
    func record(model: String, _ loaded: Loaded) { loads.withLock { $0[model] = loaded } }

    /// The load recorded for a model's current runner.
    func loaded(model: String) -> Loaded? { loads.withLock { $0[model] } }

    /// The model loaded under `identifier` by an LM Studio client, if any.
    func model(identifiedAs identifier: String) -> String? {
        loads.withLock { table in table.first { $0.value.identifier == identifier }?.key }
    }

    /// runner-manager's `runners.state`: a runner that ended takes its instance with it.
    func runnerStateChanged(model: String, state: RunnerPhase) {
        if state == .stopped || state == .failed { loads.withLock { _ = $0.removeValue(forKey: model) } }
    }

    /// What a request to `model` must carry to reach the runner it has: the settings an LM Studio
    /// client loaded it with, or — loaded by another surface with another context (Ollama's
    /// `num_ctx`) — that context, so the runner is kept rather than replaced; nil for the model's own.
    static func parameters(_ model: ResolvedModel, loaded: Loaded?, runningContext: Int?) -> JSONValue? {
        if let p = loaded?.parameters { return p }
        if let ctx = runningContext, ctx != LMStudioModelInfo.configuredContext(model) {
            return .object(JSONObject([("ctx_size", .int(ctx))]))
        }
        return nil
    }

    static func reference(model: String, pid: Int32?) -> String {
        let seed = "\(model)|\(pid ?? 0)"
        return "lr-" + FNV1a.hex(FNV1a.hash(seed.utf8)) + FNV1a.hex(FNV1a.hash(seed.utf8, basis: FNV1a.offsetBasis &+ 1))
    }

    static func nowMs() -> Int { unixMillis() }
}
