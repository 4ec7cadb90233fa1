import Shared
import Testing
@testable import Gateway

/// Token counts read from the bytes a runner sends, whatever the API and however the stream is cut.
@Suite struct UsageScannerTests {
    static let openAIStreamWithoutUsage = """
    data: {"choices":[{"index":0,"delta":{"content":"Hi"}}],"object":"chat.completion.chunk"}

    data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":"chat.completion.chunk","timings":{"cache_n":3,"prompt_n":28,"prompt_ms":12.5,"predicted_n":27,"predicted_ms":80.1}}

    data: [DONE]


    """

    static let openAIStreamWithUsage = """
    data: {"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}

    data: {"choices":[],"usage":{"completion_tokens":9,"prompt_tokens":31,"total_tokens":40,"prompt_tokens_details":{"cached_tokens":3}},"timings":{"cache_n":3,"prompt_n":28,"predicted_n":9}}

    data: [DONE]


    """

    static let anthropicStream = """
    event: message_start
    data: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":17,"output_tokens":0}}}

    event: content_block_delta
    data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"the key \\"output_tokens\\": 999 in text"}}

    event: message_delta
    data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}


    """

    @Test func timingsAloneGiveThePromptWithItsCachedPartAndTheCompletion() {
        let u = UsageScanner.usage(in: Array(Self.openAIStreamWithoutUsage.utf8))
        #expect(u == Usage(promptTokens: 31, completionTokens: 27, cachedTokens: 3))
    }

    @Test func theAPIsOwnUsageWinsOverTimings() {
        let u = UsageScanner.usage(in: Array(Self.openAIStreamWithUsage.utf8))
        #expect(u == Usage(promptTokens: 31, completionTokens: 9, cachedTokens: 3))
    }

    @Test func anthropicCountsComeFromTheFirstAndLastEventsAndEscapedKeysInTextAreIgnored() {
        let u = UsageScanner.usage(in: Array(Self.anthropicStream.utf8))
        #expect(u == Usage(promptTokens: 17, completionTokens: 12, cachedTokens: 0))
    }

    @Test(arguments: [openAIStreamWithoutUsage, openAIStreamWithUsage, anthropicStream])
    func everyCutOfTheStreamGivesTheSameCounts(text: String) {
        let bytes = Array(text.utf8)
        let whole = UsageScanner.usage(in: bytes)
        for cut in 1..<bytes.count {
            var scanner = UsageScanner()
            scanner.feed(Array(bytes[..<cut]))
            scanner.feed(Array(bytes[cut...]))
            #expect(scanner.usage == whole, "cut at \(cut)")
        }
        var bytewise = UsageScanner()
        for b in bytes { bytewise.feed([b]) }
        #expect(bytewise.usage == whole)
    }

    @Test func aBodyWithoutCountsGivesZeros() {
        #expect(UsageScanner.usage(in: Array(#"{"error":{"message":"bad"}}"#.utf8)) == Usage())
        #expect(UsageScanner.usage(in: []) == Usage())
    }

    @Test func embeddingsUsageIsRead() {
        let body = #"{"data":[{"embedding":[0.1,0.2],"index":0}],"usage":{"prompt_tokens":5,"total_tokens":5}}"#
        #expect(UsageScanner.usage(in: Array(body.utf8)) == Usage(promptTokens: 5))
    }
}
