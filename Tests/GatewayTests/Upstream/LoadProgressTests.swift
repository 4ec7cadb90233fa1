import Shared
import Synchronization
import Testing
@testable import Gateway

/// Load progress in each API's stream shape, and what follows it: the answer, or an error in the
/// stream's own error shape.
@Suite struct LoadProgressTests {
    final class Sink: HTTPBodyWriter {
        var text = ""
        func write(_ bytes: [UInt8]) async throws { text += String(decoding: bytes, as: UTF8.self) }
    }

    /// Server-sent events split at their blank lines.
    static func events(_ text: String) -> [String] {
        var out: [String] = []
        var rest = Substring(text)
        while let r = rest.firstRange(of: "\n\n") {
            out.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        if !rest.isEmpty { out.append(String(rest)) }
        return out
    }

    static func play(_ response: HTTPResponse) async throws -> String {
        let sink = Sink()
        guard case .stream(_, let producer) = response.body else { return "" }
        try await producer(sink)
        return sink.text
    }

    @Test func openAIChunksCarryTheProgressAsReasoningThenTheAnswerFollows() async throws {
        let progress = LoadProgress(surface: .openAIChat, name: "smol")
        let response = progress.response { HTTPResponse(status: .ok, body: .bytes(Array("data: {\"answer\":1}\n\n".utf8))) }
        #expect(response.status == .ok)
        let text = try await Self.play(response)
        let events = Self.events(text)
        #expect(events.count == 3, "\(events)")
        let first = try JSONParser.parse(String(events[0].dropFirst(6)))
        #expect(first["object"]?.stringValue == "chat.completion.chunk")
        #expect(first["choices"]?.arrayValue?.first?["delta"]?["reasoning_content"]?.stringValue == "Loading smol…\n")
        #expect(events[1].contains("smol is loaded"))
        #expect(events[2] == "data: {\"answer\":1}")
    }

    @Test func ollamaLinesCarryTheProgressAsThinking() async throws {
        let chat = LoadProgress(surface: .ollama(chat: true), name: "smol").chunk("Loading smol…\n")
        let line = try JSONParser.parse(String(decoding: chat.dropLast(), as: UTF8.self))
        #expect(line["message"]?["thinking"]?.stringValue == "Loading smol…\n")
        #expect(line["message"]?["content"]?.stringValue == "")
        #expect(line["done"]?.boolValue == false)
        let generate = LoadProgress(surface: .ollama(chat: false), name: "smol").chunk("x")
        #expect(try JSONParser.parse(String(decoding: generate.dropLast(), as: UTF8.self))["thinking"]?.stringValue == "x")
        #expect(chat.last == 10)
    }

    @Test func aLoadThatFailsEndsTheStreamWithAnErrorInItsShape() async throws {
        let thrown = LoadProgress(surface: .ollama(chat: true), name: "smol").response {
            throw APIError(.serviceUnavailable, "model smol failed: out of memory")
        }
        let text = try await Self.play(thrown)
        #expect(text.hasSuffix("{\"error\":\"model smol failed: out of memory\"}\n"), "\(text)")
        let refused = LoadProgress(surface: .openAIChat, name: "smol").response {
            ErrorShape.openAI.response(.serviceUnavailable, "no room")
        }
        let events = Self.events(try await Self.play(refused))
        #expect(events.last?.hasPrefix("data: {\"error\":{\"message\":\"no room\"") == true, "\(events)")
        #expect(!events.contains { $0.contains("is loaded") })
    }

    /// A ladder step taken while the client waits is written once, even when the answer comes before
    /// the next tick; a step that does not change is not repeated.
    @Test func theLaddersStepIsToldOnceBeforeTheAnswer() async throws {
        let step = Mutex<String?>(nil)
        let progress = LoadProgress(surface: .ollama(chat: true), name: "smol", note: { step.withLock { $0 } })
        let response = progress.response {
            step.withLock { $0 = "out of memory on system memory: trying a context of 4096 tokens instead of 65536" }
            return HTTPResponse(status: .ok, body: .bytes(Array("{\"done\":true}\n".utf8)))
        }
        let lines = try await Self.play(response).split(separator: "\n").map { try JSONParser.parse(String($0)) }
        let thinking = lines.compactMap { $0["message"]?["thinking"]?.stringValue }
        #expect(thinking.count == 3, "\(thinking)")
        #expect(thinking.first == "Loading smol…\n")
        #expect(thinking.dropFirst().first == "smol: out of memory on system memory: trying a context of 4096 tokens instead of 65536\n")
        #expect(thinking.last?.hasPrefix("smol is loaded") == true, "\(thinking)")
        #expect(lines.last?["done"]?.boolValue == true)
    }
}
