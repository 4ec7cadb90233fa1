import FoundationEssentials
import Testing
@testable import Shared

/// `JSONCoder` replaced swift-foundation's JSONEncoder/JSONDecoder in the services. These tests hold it
/// to the same results: every value encodes to the same JSON tree as JSONEncoder's and decodes back
/// equal, and every bad input fails with the same `DecodingError` case and coding path.
struct JSONCoderTests {
    enum Colour: String, Codable, Equatable { case red, green }
    enum Shape: Codable, Equatable {
        case circle(radius: Double)
        case square(side: Int, label: String?)
        case empty
    }
    struct Inner: Codable, Equatable {
        var name: String
        var tags: [String]
        var weight: Double?
    }
    struct Everything: Codable, Equatable {
        var s: String
        var i: Int
        var i8: Int8
        var i32: Int32
        var u16: UInt16
        var u64: UInt64
        var d: Double
        var f: Float
        var b: Bool
        var optionalPresent: Int?
        var optionalAbsent: String?
        var colour: Colour
        var shapes: [Shape]
        var inner: Inner
        var nested: [[Int]]
        var map: [String: Inner]
        var intKeys: [Int: String]
        var json: JSONValue
        var escapes: String
    }
    /// Custom coding: nested containers, a super encoder and an explicit null.
    struct Custom: Codable, Equatable {
        var a: Int
        var list: [String]
        var base: Inner
        enum Keys: String, CodingKey { case a, more, list, base, gone }
        enum MoreKeys: String, CodingKey { case list }
        init(a: Int, list: [String], base: Inner) { self.a = a; self.list = list; self.base = base }
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            a = try c.decode(Int.self, forKey: .a)
            list = try c.nestedContainer(keyedBy: MoreKeys.self, forKey: .more).decode([String].self, forKey: .list)
            base = try Inner(from: c.superDecoder(forKey: .base))
            #expect(try c.decodeNil(forKey: .gone))
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(a, forKey: .a)
            var more = c.nestedContainer(keyedBy: MoreKeys.self, forKey: .more)
            try more.encode(list, forKey: .list)
            try base.encode(to: c.superEncoder(forKey: .base))
            try c.encodeNil(forKey: .gone)
        }
    }

    static let sample = Everything(
        s: "héllo \"wörld\" / ✓ 🦙", i: -42, i8: -8, i32: 2_000_000_000, u16: 65535, u64: 9_000_000_000_000_000_000,
        d: 3.25, f: 0.5, b: true, optionalPresent: 7, optionalAbsent: nil, colour: .green,
        shapes: [.circle(radius: 1.5), .square(side: 2, label: nil), .square(side: 3, label: "x"), .empty],
        inner: Inner(name: "in", tags: [], weight: nil), nested: [[1, 2], [], [3]],
        map: ["b": Inner(name: "b", tags: ["t"], weight: 0.125), "a": Inner(name: "a", tags: ["u", "v"], weight: nil)],
        intKeys: [1: "one", 20: "twenty"], json: .object(JSONObject([("z", .int(1)), ("a", .array([.null, .bool(false), .double(2.5)]))])),
        escapes: "tab\there\nnew \u{01} \\ back")

    static func foundationTree<T: Encodable>(_ v: T) throws -> JSONValue {
        try JSONParser.parse([UInt8](try JSONEncoder().encode(v))).0
    }

    /// Trees compared by value, with numbers compared as numbers (Foundation writes 2.0 as 2).
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.entries.allSatisfy { e in y[e.key].map { same(e.value, $0) } ?? false }
        case (.array(let x), .array(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.int, _), (.double, _):
            return a.doubleValue != nil && a.doubleValue == b.doubleValue
        default:
            return a == b
        }
    }

    @Test func encodesTheSameTreeAsFoundationAndRoundTrips() throws {
        let ours = try JSONParser.parse(try JSONCoder.encode(Self.sample)).0
        #expect(Self.same(ours, try Self.foundationTree(Self.sample)))
        #expect(try JSONCoder.decode(Everything.self, from: JSONCoder.encode(Self.sample)) == Self.sample)
        // Across coders, compared with `json`'s keys sorted: Foundation neither keeps nor promises key order.
        func sorted(_ e: Everything) -> Everything { var e = e; e.json = e.json.sortingKeys(); return e }
        #expect(sorted(try JSONCoder.decode(Everything.self, from: [UInt8](JSONEncoder().encode(Self.sample)))) == sorted(Self.sample))
        #expect(sorted(try JSONDecoder().decode(Everything.self, from: Data(JSONCoder.encode(Self.sample)))) == sorted(Self.sample))

        let custom = Custom(a: 1, list: ["x", "y"], base: Inner(name: "n", tags: ["t"], weight: 2))
        let customTree = try JSONParser.parse(try JSONCoder.encode(custom)).0
        #expect(Self.same(customTree, try Self.foundationTree(custom)))
        #expect(try JSONCoder.decode(Custom.self, from: JSONCoder.encode(custom)) == custom)
    }

    @Test func keysKeepTheirEncodedOrderOrAreSortedAndTextIsExact() throws {
        struct Ordered: Encodable { var zeta = 1; var alpha = "a/b"; var mid: [Int] = [] }
        #expect(String(decoding: try JSONCoder.encode(Ordered()), as: UTF8.self) == #"{"zeta":1,"alpha":"a/b","mid":[]}"#)
        #expect(String(decoding: try JSONCoder.encode(Ordered(), sortedKeys: true), as: UTF8.self) == #"{"alpha":"a/b","mid":[],"zeta":1}"#)
        #expect(String(decoding: try JSONCoder.encode(Ordered(), sortedKeys: true, pretty: true), as: UTF8.self)
                == "{\n  \"alpha\": \"a/b\",\n  \"mid\": [],\n  \"zeta\": 1\n}\n")
        #expect(String(decoding: JSONWriter.bytes(.string("q\"b\\s\n\r\t\u{01}\u{1f}/é🦙"), pretty: false), as: UTF8.self)
                == #""q\"b\\s\n\r\t\u0001\u001f/é🦙""#)
        // A JSON tree decodes as itself, keys in document order.
        let tree = try JSONCoder.decode(JSONValue.self, from: Array(#"{"b":1,"a":{"d":[true],"c":null}}"#.utf8))
        #expect(tree.objectValue?.keys == ["b", "a"] && tree["a"]?.objectValue?.keys == ["d", "c"])
    }

    /// Each bad input fails in both coders with the same error case at the same path.
    @Test(arguments: [
        (#"{"name":"x","tags":["a",2]}"#, "typeMismatch", "tags[1]"),
        (#"{"tags":[]}"#, "keyNotFound", "name"),
        (#"{"name":null,"tags":[]}"#, "valueNotFound", "name"),
        (#"{"name":"x","tags":"a"}"#, "typeMismatch", "tags"),
        (#"{"name":"x","tags":[],"weight":"heavy"}"#, "typeMismatch", "weight"),
        (#"[1]"#, "typeMismatch", ""),
        (#"{"name":"x","tags":[]"#, "dataCorrupted", ""),
        (#"{"name":"x","tags":[] "extra"}"#, "dataCorrupted", ""),
    ])
    func errorsMatchFoundationsCaseAndPath(input: String, kind: String, path: String) throws {
        func classify(_ error: any Error) -> (String, String) {
            func p(_ keys: [any CodingKey]) -> String {
                keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingPrefix(".").description
            }
            switch error as? DecodingError {
            case .typeMismatch(_, let c)?: return ("typeMismatch", p(c.codingPath))
            case .valueNotFound(_, let c)?: return ("valueNotFound", p(c.codingPath))
            case .keyNotFound(let k, let c)?: return ("keyNotFound", p(c.codingPath + [k]))
            case .dataCorrupted(let c)?: return ("dataCorrupted", p(c.codingPath))
            default: return ("other: \(error)", "")
            }
        }
        var ours: (String, String)?
        do { _ = try JSONCoder.decode(Inner.self, from: Array(input.utf8)) } catch { ours = classify(error) }
        var theirs: (String, String)?
        do { _ = try JSONDecoder().decode(Inner.self, from: Data(input.utf8)) } catch { theirs = classify(error) }
        #expect(ours?.0 == kind && ours?.1 == path, "ours: \(String(describing: ours))")
        #expect(theirs?.0 == kind && theirs?.1 == path, "Foundation: \(String(describing: theirs))")
    }

    @Test func integersMustFitTheirTypeAndMessagesNameThePath() throws {
        struct Small: Codable { var v: UInt8 }
        #expect(throws: DecodingError.self) { try JSONCoder.decode(Small.self, from: Array(#"{"v":256}"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONCoder.decode(Small.self, from: Array(#"{"v":-1}"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONCoder.decode(Small.self, from: Array(#"{"v":1.5}"#.utf8)) }
        #expect(try JSONCoder.decode(Small.self, from: Array(#"{"v":255}"#.utf8)).v == 255)
        // Stricter than Foundation, which accepts a trailing comma: RFC 8259 has none.
        #expect(throws: DecodingError.self) { try JSONCoder.decode([Int].self, from: Array("[1,]".utf8)) }
        do {
            _ = try JSONCoder.decode([String: Inner].self, from: Array(#"{"m":{"name":"x","tags":[true]}}"#.utf8))
            Issue.record("a boolean in a string array decoded")
        } catch {
            #expect(describeDecodingError(error) == "m.tags[0]: expected a string")
        }
        do {
            _ = try JSONCoder.decode(Inner.self, from: Array("{\n  \"name\": x}".utf8))
            Issue.record("invalid JSON decoded")
        } catch {
            #expect(describeDecodingError(error).hasPrefix("not valid JSON: line 2 column 11"))
        }
    }
}
