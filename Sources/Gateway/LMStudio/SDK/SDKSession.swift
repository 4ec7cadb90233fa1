import Glibc
import Shared
import Synchronization

/// One websocket of LM Studio's SDK protocol: the authentication handshake, then RPC calls and
/// channels, each run as its own task so a long prediction does not hold up a quick call.
///
/// The protocol's rules, as the SDKs need them: the first server message answers the authentication;
/// nothing is sent that the client did not ask for (an unexpected message type ends the Python SDK's
/// receive loop for that socket); a channel's final packet comes before its `channelClose`; a void
/// RPC result has no `result` field. A call or channel this server does not implement gets an
/// `rpcError`/`channelError` naming it, where LM Studio's own server would leave the caller waiting.
/// When the socket closes, every call and channel still running is cancelled: a prediction's
/// upstream request is closed (its runner slot freed) and its lease released.
final class SDKSession: Sendable {
    let namespace: SDKNamespace
    let socket: WebSocket
    let sdk: LMStudioSDK
    private let channels = Mutex<[Int: SDKChannel]>([:])
    /// Calls and channels running now: a client cannot make this socket hold more than `maxInFlight`.
    private let inFlight = Atomic<Int>(0)

    /// How long a client may take to send its authentication message.
    static let authSeconds = 10.0
    /// Calls and channels one socket may have running at once (the SDKs have a handful); beyond it
    /// a call or channel is refused at once with an error, so a runaway client cannot pile up tasks.
    static let maxInFlight = 256

    init(namespace: SDKNamespace, socket: WebSocket, sdk: LMStudioSDK) {
        self.namespace = namespace
        self.socket = socket
        self.sdk = sdk
    }

    var backend: LMStudioBackend { sdk.backend }

    func run() async {
        guard await authenticate() else { return }
        await withDiscardingTaskGroup { group in
            while true {
                guard let message = try? await socket.receive() else { break }
                handle(message, in: &group)
            }
            group.cancelAll()
        }
    }

    /// Sends one message; a socket that closed meanwhile just drops it.
    func send(_ value: JSONValue) async {
        try? await socket.send(textBytes: JSONWriter.bytes(value, pretty: false))
    }

    private func authenticate() async -> Bool {
        enum First: Sendable { case message(WebSocket.Message), closed, timedOut }
        let socket = self.socket
        let loop = backend.loop
        let first: First = (try? await withThrowingTaskGroup(of: First.self) { group in
            group.addTask { (try await socket.receive()).map(First.message) ?? .closed }
            group.addTask { try await loop.sleep(seconds: Self.authSeconds); return .timedOut }
            defer { group.cancelAll() }
            return try await group.next() ?? .closed
        }) ?? .closed
        let message: WebSocket.Message
        switch first {
        case .closed: return false
        case .timedOut:
            await send(.object(JSONObject([("success", .bool(false)), ("error", .string("no authentication message within \(Int(Self.authSeconds)) s"))])))
            socket.close(code: WebSocketCloseCode.policyViolation, reason: "authentication timed out")
            return false
        case .message(let m): message = m
        }
        var doc: JSONValue?
        if case .text(let text) = message { doc = try? JSONParser.parse(Array(text.utf8)).0 }
        switch sdk.authenticate(doc) {
        case .success:
            await send(.object(JSONObject([("success", .bool(true))])))
            return true
        case .failure(let failure):
            sdk.logger.info("refused an LM Studio SDK client", ("namespace", namespace.rawValue), ("reason", failure.message))
            await send(.object(JSONObject([("success", .bool(false)), ("error", .string(failure.message))])))
            socket.close(code: WebSocketCloseCode.policyViolation, reason: "authentication failed")
            return false
        }
    }

    // MARK: Dispatch

    private func handle(_ message: WebSocket.Message, in group: inout DiscardingTaskGroup) {
        guard case .text(let text) = message else {
            return warn("binary frames are not part of the LM Studio protocol: send JSON as text")
        }
        guard let doc = try? JSONParser.parse(Array(text.utf8)).0, doc.objectValue != nil, let type = doc["type"]?.stringValue else {
            return warn("a message must be a JSON object with a \"type\"")
        }
        switch type {
        case "rpcCall":
            guard let id = doc["callId"]?.intValue, let endpoint = doc["endpoint"]?.stringValue else {
                return warn("rpcCall needs an integer callId and a string endpoint")
            }
            let parameter = doc["parameter"]
            guard admit() else {
                group.addTask { await self.send(SDKEnvelope.rpcError(id, Self.tooMany)) }
                return
            }
            group.addTask {
                defer { self.inFlight.subtract(1, ordering: .relaxed) }
                await self.call(endpoint, id: id, parameter: parameter)
            }
        case "channelCreate":
            guard let id = doc["channelId"]?.intValue, let endpoint = doc["endpoint"]?.stringValue else {
                return warn("channelCreate needs an integer channelId and a string endpoint")
            }
            let channel = SDKChannel(id: id)
            let fresh = channels.withLock { open -> Bool in
                guard open[id] == nil else { return false }
                open[id] = channel
                return true
            }
            let parameter = doc["creationParameter"]
            guard fresh else {
                group.addTask { await self.send(SDKEnvelope.channelError(id, SDKError(title: "Channel \(id) is already open"))) }
                return
            }
            guard admit() else {
                channels.withLock { _ = $0.removeValue(forKey: id) }
                group.addTask { await self.send(SDKEnvelope.channelError(id, Self.tooMany)) }
                return
            }
            group.addTask {
                defer { self.inFlight.subtract(1, ordering: .relaxed) }
                await self.open(endpoint, channel: channel, parameter: parameter)
                self.channels.withLock { _ = $0.removeValue(forKey: id) }
            }
        case "channelSend":
            guard let id = doc["channelId"]?.intValue else { return warn("channelSend needs an integer channelId") }
            if doc["message"]?["type"]?.stringValue == "cancel" { channels.withLock { $0[id] }?.cancel() }
        case "channelAck", "signalUnsubscribe", "writableSignalUnsubscribe", "writableSignalUpdate":
            break
        case "keepAlive":
            group.addTask { await self.send(SDKEnvelope.packet("keepAliveAck")) }
        case "signalSubscribe", "writableSignalSubscribe":
            let id = doc["subscribeId"] ?? .null
            let reply = type == "signalSubscribe" ? "signalError" : "writableSignalError"
            let error = SDKError(title: "Signals are not supported by Llama Runner (\(doc["endpoint"]?.stringValue ?? "?"))")
            group.addTask { await self.send(.object(JSONObject([("type", .string(reply)), ("subscribeId", id), ("error", error.json)]))) }
        case "communicationWarning":
            sdk.logger.warning("an LM Studio SDK client reported a protocol problem", ("namespace", namespace.rawValue),
                               ("warning", doc["warning"]?.stringValue ?? ""))
        default:
            warn("unknown message type \"\(type)\"")
        }
    }

    /// Counts a new call or channel in, unless `maxInFlight` are running.
    private func admit() -> Bool {
        if inFlight.add(1, ordering: .relaxed).newValue <= Self.maxInFlight { return true }
        inFlight.subtract(1, ordering: .relaxed)
        return false
    }

    static let tooMany = SDKError(title: "Too many calls at once on this connection (at most \(maxInFlight))",
                                  suggestion: "Wait for earlier calls to finish")

    private func warn(_ text: String) {
        sdk.logger.info("an LM Studio SDK client sent an unusable message", ("namespace", namespace.rawValue), ("problem", text))
        let socket = self.socket
        Task(executorPreference: backend.loop) {
            try? await socket.send(textBytes: JSONWriter.bytes(SDKEnvelope.communicationWarning(text), pretty: false))
        }
    }

    /// An RPC: its result (none for a void one) or its error.
    private func call(_ endpoint: String, id: Int, parameter: JSONValue?) async {
        do throws(SDKError) {
            let result = try await rpc(endpoint, parameter: parameter ?? .null)
            await send(SDKEnvelope.rpcResult(id, result))
        } catch {
            await send(SDKEnvelope.rpcError(id, error))
        }
    }

    /// A channel: its packets, then `channelClose` after the final one, or `channelError`.
    private func open(_ endpoint: String, channel: SDKChannel, parameter: JSONValue?) async {
        do throws(SDKError) {
            try await self.channel(endpoint, channel: channel, parameter: parameter ?? .null)
            await send(SDKEnvelope.channelClose(channel.id))
        } catch {
            await send(SDKEnvelope.channelError(channel.id, error))
        }
    }

    /// Sends a packet on a channel.
    func packet(_ channel: SDKChannel, _ type: String, _ fields: [(String, JSONValue)] = []) async {
        await send(SDKEnvelope.channelSend(channel.id, SDKEnvelope.packet(type, fields)))
    }

    // MARK: Endpoints

    private func rpc(_ endpoint: String, parameter: JSONValue) async throws(SDKError) -> JSONValue? {
        switch (namespace, endpoint) {
        case (.system, "listDownloadedModels"): return listDownloadedModels()
        case (.system, "listDownloadedModelVariants"): return try listVariants(parameter)
        case (.system, "version"): return .object(JSONObject([("version", .string(LlamaRunnerVersion.current)), ("build", .int(1))]))
        case (.system, "info"):
            return .object(JSONObject([("pid", .int(Int(getpid()))), ("isDaemon", .bool(true)), ("version", .string(LlamaRunnerVersion.current))]))
        case (.system, "notify"): return nil
        case (.llm, "listLoaded"), (.embedding, "listLoaded"): return await listLoaded()
        case (.llm, "unloadModel"), (.embedding, "unloadModel"): try await unloadModel(parameter); return nil
        case (.llm, "getModelInfo"), (.embedding, "getModelInfo"): return try await modelInfo(parameter)
        case (.llm, "getLoadConfig"), (.embedding, "getLoadConfig"): return try await loadConfig(parameter)
        case (.llm, "tokenize"), (.embedding, "tokenize"): return try await tokenize(parameter, count: false)
        case (.llm, "countTokens"), (.embedding, "countTokens"): return try await tokenize(parameter, count: true)
        case (.llm, "applyPromptTemplate"): return try await applyPromptTemplate(parameter)
        case (.embedding, "embedString"): return try await embed(parameter)
        case (.files, _), (.repository, _):
            throw unsupported(endpoint, why: namespace == .files
                ? "files (images and documents for chats) are not supported yet"
                : "searching and downloading models is not supported yet: put GGUF files in the models folder, or point models_config.json at them")
        default:
            throw unsupported(endpoint)
        }
    }

    private func channel(_ endpoint: String, channel: SDKChannel, parameter: JSONValue) async throws(SDKError) {
        switch (namespace, endpoint) {
        case (.llm, "getOrLoad"), (.embedding, "getOrLoad"): try await getOrLoad(parameter, channel: channel)
        case (.llm, "loadModel"), (.embedding, "loadModel"): try await loadModel(parameter, channel: channel)
        case (.llm, "predict"): try await predict(parameter, channel: channel, rawPrompt: nil)
        case (.llm, "completeRawText"):
            guard let prompt = parameter["rawPrompt"]?.stringValue else { throw SDKError.invalidParameter("completeRawText needs rawPrompt, a string") }
            try await predict(parameter, channel: channel, rawPrompt: prompt)
        case (.system, "alive"):
            // Open for as long as the client keeps it: cancelled when the socket closes.
            await channel.whileOpen()
        case (.repository, "downloadModel"):
            throw unsupported(endpoint, why: "downloading models is not supported yet: put GGUF files in the models folder")
        default:
            throw unsupported(endpoint)
        }
    }

    func unsupported(_ endpoint: String, why: String? = nil) -> SDKError {
        SDKError(title: "\(namespace.rawValue).\(endpoint) is not supported by Llama Runner", cause: why,
                 suggestion: "Llama Runner implements the llm, embedding and system operations of the LM Studio SDK")
    }
}

/// An open channel: the client's `cancel` (or the socket's end) cancels the work it runs.
final class SDKChannel: Sendable {
    let id: Int
    private let state = Mutex<(cancelled: Bool, cancel: (@Sendable () -> Void)?)>((false, nil))

    init(id: Int) { self.id = id }

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// The client asked to stop.
    func cancel() {
        let action = state.withLock { s -> (@Sendable () -> Void)? in
            s.cancelled = true
            return s.cancel
        }
        action?()
    }

    /// Runs `work` so that a cancel stops it (as task cancellation) while the channel itself goes on:
    /// the caller still sends the channel's final packet. The channel's own cancellation (the socket
    /// closed) reaches `work` too.
    func cancellable<T: Sendable>(loop: EventLoop, _ work: @escaping @Sendable () async -> T) async -> T {
        let task = Task(executorPreference: loop) { await work() }
        let cancelledAlready = state.withLock { s -> Bool in
            s.cancel = { task.cancel() }
            return s.cancelled
        }
        if cancelledAlready { task.cancel() }
        return await withTaskCancellationHandler { await task.value } onCancel: { task.cancel() }
    }

    /// Waits until the channel is cancelled by its client or its socket.
    func whileOpen() async {
        let gate = AsyncStream<Void>.makeStream()
        let already = state.withLock { s -> Bool in
            let continuation = gate.continuation
            s.cancel = { continuation.finish() }
            return s.cancelled
        }
        if already { gate.continuation.finish() }
        await withTaskCancellationHandler {
            for await _ in gate.stream {}
        } onCancel: { gate.continuation.finish() }
    }
}
