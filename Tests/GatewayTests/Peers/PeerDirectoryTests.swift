@testable import Gateway
import Shared
import Synchronization
import Testing

@Suite struct PeerDirectoryTests {
    @Test func baseURLsWithOrWithoutV1ReachTheSamePaths() throws {
        for (base, prefix) in [("http://10.0.0.2:8080", ""), ("http://10.0.0.2:8080/v1", ""), ("https://lab.example/v1/", ""),
                               ("http://h/proxy/llm/v1", "/proxy/llm"), ("http://h/proxy/", "/proxy")] {
            let peer = try #require(PeerDirectory.make(AppConfig.Peer(baseURL: base)), "\(base)")
            #expect(peer.prefix == prefix, "\(base)")
        }
        let tls = try #require(PeerDirectory.make(AppConfig.Peer(baseURL: "https://lab.example/v1")))
        #expect(tls.client.tlsHost == "lab.example" && tls.client.address == .tcp(host: "lab.example", port: 443))
        #expect(PeerDirectory.make(AppConfig.Peer(baseURL: "ftp://x")) == nil)
    }

    @Test func theModelFilterIsAWholeNameGlob() {
        let peer = AppConfig.Peer(baseURL: "http://h", models: ["qwen3-*", "llama-3.1-8b"])
        #expect(peer.offers("qwen3-8b") && peer.offers("qwen3-") && peer.offers("llama-3.1-8b"))
        #expect(!peer.offers("llama-3.1-8b-instruct") && !peer.offers("my-qwen3-8b") && !peer.offers("Qwen3-8b"))
        #expect(AppConfig.Peer(baseURL: "http://h").offers("anything"))
        #expect(GlobPattern.matches("*", "") && GlobPattern.matches("a*b*c", "axxbyyc") && !GlobPattern.matches("a*b", "ab c"))
        #expect(GlobPattern.matches("HTTP://*", "http://x", ignoringCase: true))
    }

    @Test func aPeerNotUpAnswers503AndItsUnknownModelsStillResolveToIt() throws {
        let peers = PeerDirectory()
        peers.configure(["box": AppConfig.Peer(baseURL: "http://127.0.0.1:9", models: ["m*"])])
        let placeholder = try #require(peers.placeholder("box/mine"))
        #expect(placeholder.peer == PeerModelRef(peer: "box", model: "mine") && placeholder.id == "box/mine")
        #expect(peers.placeholder("box/other") == nil, "the filter applies to names the peer has not listed")
        #expect(peers.placeholder("nobox/mine") == nil && peers.placeholder("box/") == nil)
        peers.markDown("box", "connect: connection refused")
        guard case .failure(let error) = peers.route(PeerModelRef(peer: "box", model: "mine")) else {
            Issue.record("a down peer was routed")
            return
        }
        #expect(error.status == .serviceUnavailable && error.message.containsText("peer 'box'") && error.message.containsText("connection refused"))
        #expect(peers.statuses.map(\.state) == [.down])
    }

    @Test func reconfiguringKeepsTheStateOfUnchangedPeers() {
        let peers = PeerDirectory()
        let counter = Mutex(0)
        peers.onChange { counter.withLock { $0 += 1 } }
        let a = AppConfig.Peer(baseURL: "http://127.0.0.1:9")
        peers.configure(["a": a])
        peers.markDown("a", "refused")
        peers.configure(["a": a])
        #expect(peers.statuses.first?.state == .down)
        peers.configure(["a": AppConfig.Peer(baseURL: "http://127.0.0.1:10")])
        #expect(peers.statuses.first?.state == .unknown)
        peers.configure([:])
        #expect(peers.statuses.isEmpty)
        #expect(counter.withLock { $0 } == 4)
    }

    @Test func aPeersModelsFollowTheLocalOnesAndNeverShadowThem() {
        let local = RegistrySnapshot(revision: "r1", defaultModel: nil, models: [PeerDirectory.entry(peer: "x", model: "y")].map {
            var m = $0
            m.id = "box/a"
            m.peer = nil
            return m
        })
        let merged = ModelCatalog.merge(local, [PeerDirectory.entry(peer: "box", model: "a"), PeerDirectory.entry(peer: "box", model: "b")])
        #expect(merged.revision == "r1" && merged.models.map(\.id) == ["box/a", "box/b"] && merged.models[0].peer == nil)
        #expect(merged.resolve("box/b:latest")?.peer == PeerModelRef(peer: "box", model: "b"))
    }
}
