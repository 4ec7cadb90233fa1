import Shared

/// Finds the token counts in a runner's response as it streams past, whatever the API: OpenAI's
/// `usage` (`prompt_tokens`, `completion_tokens`, `prompt_tokens_details.cached_tokens`), Anthropic's
/// and the Responses API's (`input_tokens`, `output_tokens`, `cache_read_input_tokens`,
/// `cached_tokens`), and llama-server's own `timings` (`prompt_n` evaluated, `cache_n` reused from the
/// cache, `predicted_n` generated), which it sends on every final chunk — also on an OpenAI stream
/// without `stream_options.include_usage`, whose client sees no `usage` at all.
///
/// Scans bytes, not JSON: the counts can be anywhere in a long stream (Anthropic's input count is in
/// the first event), a piece can end mid-key, and parsing every event would cost more than the relay.
/// The last value of each key wins. A key inside a JSON string is escaped (`\"prompt_tokens\"`) and is
/// not taken for one.
struct UsageScanner: Sendable {
    enum Key: Int, CaseIterable {
        case promptTokens, completionTokens, inputTokens, outputTokens, cachedTokens, cacheReadInputTokens, promptN, cacheN, predictedN

        var needle: [UInt8] {
            let name = switch self {
            case .promptTokens: "prompt_tokens"
            case .completionTokens: "completion_tokens"
            case .inputTokens: "input_tokens"
            case .outputTokens: "output_tokens"
            case .cachedTokens: "cached_tokens"
            case .cacheReadInputTokens: "cache_read_input_tokens"
            case .promptN: "prompt_n"
            case .cacheN: "cache_n"
            case .predictedN: "predicted_n"
            }
            return Array("\"\(name)\"".utf8)
        }
    }

    private static let needles = Key.allCases.map(\.needle)
    private var values = [Int?](repeating: nil, count: Key.allCases.count)
    /// The end of the previous piece, scanned again with the next.
    private var carry: [UInt8] = []

    /// The last value seen for `key`.
    func value(_ key: Key) -> Int? { values[key.rawValue] }

    /// Scans the next piece. The end of the previous piece is scanned again with the start of this one,
    /// so a key or a number cut in two is read whole (a cut number's first digits are overwritten);
    /// the piece itself is scanned in place, never copied (this runs on every relayed piece).
    mutating func feed(_ piece: [UInt8]) {
        if !carry.isEmpty {
            let boundary = carry + piece.prefix(Self.overlap)
            boundary.withUnsafeBufferPointer { scan($0) }
        }
        piece.withUnsafeBufferPointer { scan($0) }
        carry = piece.count >= Self.overlap ? Array(piece.suffix(Self.overlap)) : Array((carry + piece).suffix(Self.overlap))
    }

    private mutating func scan(_ bytes: UnsafeBufferPointer<UInt8>) {
        let n = bytes.count
        var i = 0
        while i < n {
            guard bytes[i] == UInt8(ascii: "\""), i + 1 < n, i == 0 || bytes[i - 1] != UInt8(ascii: "\\") else { i += 1; continue }
            var next = i + 1
            for (k, needle) in Self.needles.enumerated() where bytes[i + 1] == needle[1] && i + needle.count <= n {
                guard bytes[i..<(i + needle.count)].elementsEqual(needle) else { continue }
                var j = i + needle.count
                while j < n && (bytes[j] == 32 || bytes[j] == 9) { j += 1 }
                guard j < n, bytes[j] == UInt8(ascii: ":") else { break }
                j += 1
                while j < n && (bytes[j] == 32 || bytes[j] == 9) { j += 1 }
                var value = 0, digits = 0
                while j < n && bytes[j] >= 48 && bytes[j] <= 57 && digits < 18 {
                    value = value * 10 + Int(bytes[j] - 48)
                    j += 1
                    digits += 1
                }
                if digits > 0 { values[k] = value }
                next = j
                break
            }
            i = next
        }
    }

    /// Longer than any key with its colon, spaces and number.
    static let overlap = 64

    /// The counts the client was told: the API's own usage fields when it sent them, else llama-server's
    /// timings (prompt tokens = evaluated + reused from the cache).
    var usage: Usage {
        let timedPrompt = value(.promptN).map { $0 + (value(.cacheN) ?? 0) }
        return Usage(promptTokens: value(.promptTokens) ?? value(.inputTokens) ?? timedPrompt ?? 0,
                     completionTokens: value(.completionTokens) ?? value(.outputTokens) ?? value(.predictedN) ?? 0,
                     cachedTokens: value(.cachedTokens) ?? value(.cacheReadInputTokens) ?? value(.cacheN) ?? 0)
    }

    /// The counts in a complete body.
    static func usage(in body: [UInt8]) -> Usage {
        var scanner = UsageScanner()
        scanner.feed(body)
        return scanner.usage
    }
}
