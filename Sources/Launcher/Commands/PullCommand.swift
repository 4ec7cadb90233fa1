import Glibc
import Shared

/// `launcher pull NAME [QUANT]`: a model from the Hugging Face Hub, pulled by the running
/// model-registry (so it is registered and usable at once), with its progress: a bar redrawn in place
/// on a terminal, plain lines (one per phase and every 10 %) otherwise. Ctrl+C cancels the pull; what
/// was downloaded is kept, and pulling again resumes it.
enum PullCommand {
    static func run(_ options: ServiceOptions, name: String, quantization: String?) async -> Int32 {
        let socket = options.paths.socket(.registry)
        guard Sockets.isUnixSocketLive(socket) else {
            printError("launcher pull: Llama Runner is not running (no model-registry at \(socket)): start it with `launcher up`")
            return ControlCommands.notRunning
        }
        let client = RPCClient(path: socket, defaultTimeout: 10)
        let (updates, feed) = AsyncStream<PullStatus>.makeStream(bufferingPolicy: .bufferingNewest(256))
        client.onNotification { method, data in
            if method == RegistryRPC.PullProgress.name, let status = RPCClient.decode(RegistryRPC.PullProgress.self, from: data) { feed.yield(status) }
        }
        client.start()
        client.subscribe()
        let started: PullStatus
        do {
            started = try await client.call(RegistryRPC.Pull.self, PullRequest(name: name, quantization: quantization))
        } catch RPCError.remote(let fault) {
            printError("launcher pull: \(fault.message)")
            return fault.code == RPCFault.validationCode ? ExitCode.usage : ExitCode.failure
        } catch {
            printError("launcher pull: \(error)")
            return ExitCode.failure
        }
        ProcessSignals.handle(on: .shared) { _ in
            Task(executorPreference: EventLoop.shared) { _ = try? await client.call(RegistryRPC.CancelPull.self, PullRef(job: started.job)) }
        }
        // The state now (the pull may have moved on, or ended, before the subscription took).
        if let now = try? await client.call(RegistryRPC.PullStatusGet.self, PullRef(job: started.job)) { feed.yield(now) }
        var view = ProgressView(terminal: isatty(1) == 1, model: started.model ?? name)
        for await status in updates where status.job == started.job {
            view.show(status)
            guard status.phase.isFinished else { continue }
            view.end()
            switch status.phase {
            case .done:
                print("\(status.alreadyDownloaded ? "already downloaded" : "pulled") \(status.model ?? name) (\(ProgressView.megabytes(status.totalBytes))); it is ready to use")
                return ExitCode.ok
            default:
                printError("launcher pull: \(status.error ?? "the pull \(status.phase.rawValue)")")
                return ExitCode.failure
            }
        }
        return ExitCode.failure
    }
}

/// What `launcher pull` prints as a pull goes.
struct ProgressView {
    let terminal: Bool
    let model: String
    private var lastPhase: PullPhase?
    private var lastTenth = -1
    private var drawn = false

    init(terminal: Bool, model: String) {
        self.terminal = terminal
        self.model = model
    }

    static func megabytes(_ bytes: Int) -> String {
        let tenths = Int((Double(bytes) / 1e6 * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) MB"
    }

    mutating func show(_ s: PullStatus) {
        let total = s.totalBytes, done = s.completedBytes
        let fraction = total > 0 ? Double(done) / Double(total) : 0
        if terminal {
            guard s.phase == .downloading || s.phase == .verifying || s.phase == .registering else {
                if s.phase != lastPhase && !s.phase.isFinished { line("\(model): \(s.phase.rawValue)…") }
                lastPhase = s.phase
                return
            }
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            let speed = s.bytesPerSecond.map { " \(Self.megabytes(Int($0)))/s" } ?? ""
            let label = s.phase == .downloading ? "pulling" : s.phase.rawValue
            var text = "\r\(label) \(model) \(bar) \(Int(fraction * 100))% \(Self.megabytes(done))/\(Self.megabytes(total))\(speed)\u{1B}[K"
            text.withUTF8 { _ = write(1, $0.baseAddress, $0.count) }
            drawn = true
        } else {
            let tenth = Int(fraction * 10)
            if (s.phase == .downloading || s.phase == .verifying) && tenth > lastTenth && total > 0 && lastPhase != nil {
                lastTenth = tenth
                line("\(tenth * 10)% (\(Self.megabytes(done)) of \(Self.megabytes(total)))")
            }
            if s.phase != lastPhase && !s.phase.isFinished {
                line("\(s.phase.rawValue) \(model)" + (s.phase == .downloading ? ": " + s.files.map { "\($0.name) (\(Self.megabytes($0.total)))" }.joined(separator: ", ") : ""))
            }
        }
        lastPhase = s.phase
    }

    mutating func end() {
        if drawn { print("") }
        drawn = false
    }

    private mutating func line(_ text: String) {
        if drawn { print("") }
        drawn = false
        print(text)
    }
}
