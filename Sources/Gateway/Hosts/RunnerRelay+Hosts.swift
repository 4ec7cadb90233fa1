import Shared

extension RunnerRelay {
    /// `runners.acquire` on the best host for the model (`RunnerHosts.candidates`), and on the next
    /// one when a host fails on the way (its connection lost, its model gone): a host that died while
    /// the request waited for a load is replaced by another that has the model. On one machine, the
    /// local runner-manager as ever (surviving its restart).
    func place(_ params: AcquireRequest) async throws -> (AcquireResult, RunnerHosts.Host) {
        guard hosts.isMultiHost else { return (try await acquire(params), hosts.local) }
        let candidates = hosts.candidates(for: params.model)
        if candidates.isEmpty {
            let down = hosts.downHosts(having: params.model)
            if !down.isEmpty {
                throw APIError(.serviceUnavailable, "model \(params.model) is only on \(down.count == 1 ? "host" : "hosts") " +
                               "\(down.joined(separator: ", ")), which \(down.count == 1 ? "is" : "are") down; it is used again as soon as it answers",
                               headers: ["Retry-After": "2"])
            }
            // No host reported it (their first heartbeats may not be in): this machine decides, as on one.
            return (try await acquire(params), hosts.local)
        }
        var failures: [String] = []
        for host in candidates {
            var p = params
            if !host.isLocal { p.revision = nil }  // the gateway's registry revision means nothing there
            do {
                let runners = host.client
                let grant = try await runners.call(RunnersRPC.Acquire.self, p, timeout: Self.acquireSeconds) { grant in
                    RunnerLease.send(grant.lease, via: runners)
                }
                return (grant, host)
            } catch RPCError.connectionLost {
                if Task.isCancelled { throw CancellationError() }
                hosts.markDown(host, "its connection was lost while \(params.model) was being acquired")
                failures.append("\(host.name): connection lost")
            } catch RPCError.remote(let fault) where fault.code == RPCFault.notFoundCode {
                failures.append("\(host.name): \(fault.message)")
            }
        }
        throw APIError(.serviceUnavailable, "no host could serve \(params.model): \(failures.joined(separator: "; "))", headers: ["Retry-After": "2"])
    }
}
