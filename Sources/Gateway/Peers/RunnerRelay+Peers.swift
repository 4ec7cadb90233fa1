import Shared

extension RunnerRelay {
    /// A request for a peer's model (`<peer>/<model>`): no lease and no load here, the body's `model`
    /// renamed to the peer's own id, the peer's API key instead of anything the client sent, and the
    /// same `Call` back, so every surface's translation, streaming, disconnect handling and record
    /// apply unchanged. A peer that is down answers 503 at once; one that fails to connect is marked
    /// down (503), one that breaks otherwise is a 502.
    func callPeer(_ request: RequestOrigin, model: ResolvedModel, ref: PeerModelRef, path: String, upload: HTTPClientRequest.Body,
                  contentType: String, accept: String) async throws(APIError) -> Call {
        if request.hops >= PeerDirectory.maxHops {
            throw APIError(HTTPStatus(508), "request for \(model.id) has passed \(request.hops) gateways: the peers of app_config.json form a loop")
        }
        guard case .bytes(let bytes) = upload, contentType == "application/json" else {
            throw APIError(.badRequest, "model '\(model.id)' is a peer's: uploads (transcription) are not relayed to peers; use the peer directly",
                           param: "model", code: "model_not_supported")
        }
        let route: (client: HTTPClient, prefix: String, apiKey: String?)
        switch catalog.peers.route(ref) {
        case .success(let r): route = r
        case .failure(let error): throw error
        }
        InFlightTicket.current?.update(model: model.id, phase: .answering)
        var body = bytes
        if var doc = try? JSONParser.parse(bytes).0, doc.objectValue != nil {
            doc["model"] = .string(ref.model)
            body = JSONWriter.bytes(doc, pretty: false)
        }
        var headers: HTTPHeaders = ["Content-Type": contentType, "Accept": accept, PeerDirectory.hopsHeader: String(request.hops + 1)]
        if let key = route.apiKey { headers.add("Authorization", "Bearer \(key)") }
        let sendStart = monotonicNanos()
        let upstream: HTTPClientResponse
        do {
            upstream = try await route.client.send(HTTPClientRequest(method: "POST", target: route.prefix + path, headers: headers, body: .bytes(body)),
                                                   timeout: 900)
        } catch let error where error is SocketError || error as? EventLoopError == .timedOut {
            // Not connected: refused, unreachable, or no answer to the connect within its timeout.
            catalog.peers.markDown(ref.peer, "\(error)")
            throw APIError(.serviceUnavailable, "peer '\(ref.peer)' did not answer: \(error)", headers: ["Retry-After": "2"])
        } catch is CancellationError {
            throw APIError(HTTPStatus(499), "the client closed the connection while waiting for \(model.id)")
        } catch {
            throw APIError(.badGateway, "peer '\(ref.peer)' failed on \(model.id): \(error)")
        }
        let overhead = Double(sendStart &- request.receivedAt) / 1e6
        let grant = AcquireResult(model: model.id, endpoint: route.client.address.description, lease: 0, loadDurationMs: 0)
        return Call(model: model, grant: grant, lease: .none, upstream: upstream, receivedAt: request.receivedAt, overheadMs: max(0, overhead))
    }
}
