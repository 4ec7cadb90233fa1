import Testing
@testable import Shared

/// The one name resolution every service uses.
@Suite struct ModelResolutionTests {
    static func model(_ id: String, aliases: [String] = [], display: String? = nil) -> ResolvedModel {
        ResolvedModel(id: id, aliases: aliases, displayName: display, path: "/m/\(id).gguf", runtime: "llama-server", runtimeKind: .llamaServer,
                      runtimePath: "llama-server", parameters: .object(JSONObject()), kind: .chat, ttlSeconds: nil, unlisted: false,
                      mmproj: nil, autoDiscovered: false, autoUpdateModel: false, state: .available, error: nil, metadata: nil)
    }

    let snapshot = RegistrySnapshot(revision: "r", defaultModel: "qwen", models: [
        model("qwen", aliases: ["q", "fast"], display: "Qwen 3"),
        model("Llama-3.2-1B", aliases: ["llama"]),
        model("fast"),  // an id equal to another model's alias: the id wins
    ])

    @Test func idsAliasesAndDisplayNamesResolve() {
        #expect(snapshot.resolve("qwen")?.id == "qwen")
        #expect(snapshot.resolve("q")?.id == "qwen")
        #expect(snapshot.resolve("Qwen 3")?.id == "qwen")
        #expect(snapshot.resolve("fast")?.id == "fast")
    }

    @Test func ollamaNamesWithTheLatestTagAndOtherCasesResolve() {
        #expect(snapshot.resolve("qwen:latest")?.id == "qwen")
        #expect(snapshot.resolve("llama:latest")?.id == "Llama-3.2-1B")
        #expect(snapshot.resolve("llama-3.2-1b")?.id == "Llama-3.2-1B")
        #expect(snapshot.resolve("qwen:7b") == nil, "another tag is another model")
    }

    @Test func noNameIsTheDefaultModelAndUnknownNamesAreNil() {
        #expect(snapshot.resolve(nil)?.id == "qwen")
        #expect(snapshot.resolve("  ")?.id == "qwen")
        #expect(snapshot.resolve("nope") == nil)
        #expect(RegistrySnapshot(revision: "r", defaultModel: nil, models: []).resolve(nil) == nil)
    }

    @Test func vocabularyTravelsAsTheStringsItAlwaysWas() throws {
        #expect(try JSONCoder.encodeValue(RunnerState(model: "m", state: .loading)) == .object(JSONObject([("model", .string("m")), ("state", .string("loading"))])))
        #expect(RuntimeKind.whisperServer.rawValue == "whisper-server")
        #expect(ConfigFileState.default.rawValue == "default")
        #expect(throws: DecodingError.self) { try JSONCoder.decode(RunnerState.self, from: Array(#"{"model":"m","state":"sleeping"}"#.utf8)) }
    }
}
