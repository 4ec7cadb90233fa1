import Testing
@testable import ModelRegistry
@testable import Shared

@Suite struct ConfigValidationTests {
    static let goodApp = try! JSONParser.parse(readFile(repositoryRoot + "/config/app_config.json")!)
    static let goodModels = try! JSONParser.parse(readFile(repositoryRoot + "/config/models_config.json")!)

    func errors(app: JSONValue = goodApp, models: JSONValue = goodModels) -> [String] {
        ConfigValidator.validate(app: app, models: models).filter { $0.severity == .error }.map(\.description)
    }

    func models(_ text: String) -> JSONValue { try! JSONParser.parse(text) }

    @Test func theCommittedDefaultsAreValidAndMatchTheBuiltIns() {
        #expect(errors().isEmpty)
        #expect(ConfigValidator.validate(app: Self.goodApp, models: Self.goodModels).isEmpty, "no warnings either")
        #expect(Self.goodModels == BuiltInConfig.models, "config/models_config.json and BuiltInConfig must agree")
        #expect(errors(app: BuiltInConfig.app, models: BuiltInConfig.models).isEmpty)
    }

    @Test func aWrongTypeNamesFilePathAndValue() {
        let doc = models(#"{"models": {"qwen": {"model_path": "q.gguf", "parameters": {"ctx_size": "16k"}}}}"#)
        #expect(errors(models: doc) == [#"models_config.json: models.qwen.parameters.ctx_size: expected an integer, got "16k""#])
        let app = try! JSONParser.parse(#"{"proxies": {"ollama": {"port": 70000}}, "limits": {"memory_budget": "lots"}, "runtimes": {"llama-server": {"kind": "llama-server", "path": "llama-server"}, "whisper-server": {"kind": "whisper-server", "path": "whisper-server"}, "w": {"kind": "whisper", "path": "w"}}}"#)
        #expect(errors(app: app) == [
            "app_config.json: proxies.ollama.port: expected an integer from 1 to 65535, got 70000",
            "app_config.json: runtimes.w.kind: expected one of \"llama-server\", \"whisper-server\", got \"whisper\"",
            "app_config.json: limits.memory_budget: expected a number of bytes or a percentage such as \"80%\", got \"lots\"",
        ])
    }

    @Test func requiredFieldsAndBadIds() {
        let doc = models(#"{"models": {"a": {"parameters": {}}, "has space": {"model_path": "x"}, "b": "nope"}}"#)
        #expect(errors(models: doc) == [
            "models_config.json: models.a.model_path: is required",
            #"models_config.json: models["has space"]: invalid key: expected an id without spaces or quotes"#,
            #"models_config.json: models.b: expected an object, got "nope""#,
        ])
    }

    @Test func unknownKeysAreWarningsNotErrors() {
        let doc = models(#"{"models": {"a": {"model_path": "a.gguf", "colour": "blue"}}, "extra": 1}"#)
        let issues = ConfigValidator.validate(app: Self.goodApp, models: doc)
        #expect(issues.filter { $0.severity == .error }.isEmpty)
        #expect(issues.filter { $0.severity == .warning }.map(\.description) == [
            "models_config.json: models.a.colour: unknown key (ignored)",
            "models_config.json: extra: unknown key (ignored)",
        ])
    }

    @Test func crossEntryRules() {
        let doc = models(#"""
        {"default_model": "ghost",
         "models": {
           "a": {"model_path": "a.gguf", "aliases": ["shared", "b", "twice", "twice"]},
           "b": {"model_path": "b.gguf", "aliases": ["shared"], "llama_cpp_runtime": "vllm"}
         }}
        """#)
        #expect(errors(models: doc) == [
            #"models_config.json: models.a.aliases[1]: alias "b" is the id of another model"#,
            #"models_config.json: models.a.aliases[3]: alias "twice" is listed twice"#,
            #"models_config.json: models.b.llama_cpp_runtime: runtime "vllm" is not defined in app_config.json runtimes (defined: "llama-server", "whisper-server")"#,
            #"models_config.json: models.b.aliases[0]: alias "shared" is also an alias of "a""#,
            "models_config.json: default_model: model \"ghost\" does not exist (models: a, b)",
        ])
        // A default model named by alias is fine.
        #expect(errors(models: models(#"{"default_model": "x", "models": {"a": {"model_path": "a.gguf", "aliases": ["x"]}}}"#)).isEmpty)
    }

    @Test func pinnedModelsBeyondTheLoadLimitAndAnUnknownResidentModelAreErrors() {
        let doc = models(#"""
        {"models": {
           "a": {"model_path": "a.gguf", "pinned": true},
           "b": {"model_path": "b.gguf", "pinned": true, "aliases": ["bee"]},
           "c": {"model_path": "c.gguf", "pinned": true}
         }}
        """#)
        let app = models(#"{"limits": {"max_loaded_models": 2}, "resident_model": "ghost"}"#)
        #expect(errors(app: app, models: doc) == [
            "app_config.json: resident_model: model \"ghost\" does not exist (models: a, b, c)",
            "models_config.json: models: 3 models are pinned (a, b, c) but limits.max_loaded_models is 2: unpin some or raise the limit",
        ])
        // Three pinned models fit a limit of three; a resident model may be named by alias.
        #expect(errors(app: models(#"{"limits": {"max_loaded_models": 3}, "resident_model": "bee"}"#), models: doc).isEmpty)
    }

    @Test func syntaxErrorsHaveLineAndColumn() {
        #expect(throws: JSONSyntaxError(line: 2, column: 15, message: "expected ',' or '}' after a value")) {
            _ = try JSONParser.parse("{\"a\": 1,\n  \"b\": [1, 2] \"c\": 3}")
        }
        #expect(throws: JSONSyntaxError(line: 1, column: 1, message: "duplicate key \"a\"")) { _ = try JSONParser.parse(#"{"a": 1, "a": 2}"#) }
        #expect(throws: JSONSyntaxError.self) { _ = try JSONParser.parse(#"{"a": "C:\models"}"#) }
    }

    /// The seed project's own example config loads as it is: its Windows path has
    /// invalid JSON escapes, kept with a warning, and simply names a file that is not there.
    @Test func theSeedExampleLoads() throws {
        let seed = #"""
        {
          "default_model": "qwen2.5-7b-instruct",
          "models": {
            "qwen2.5-7b-instruct": {
              "model_path": "..\models\qwen2.5-7b-instruct-q4_k_m.gguf",
              "llama_cpp_runtime": "llama-server",
              "parameters": {
                "ctx_size": 16000,
                "n_gpu_layers": 50,
                "temp": 0.6
              },
              "auto_discovered": true,
              "auto_update_model": false
            }
          }
        }
        """#
        let (doc, warnings) = try JSONParser.parse(Array(seed.utf8), lenientEscapes: true)
        #expect(warnings.count == 2)
        #expect(warnings[0].contains(#""\m" is not a JSON escape"#))
        #expect(errors(app: BuiltInConfig.app, models: doc).isEmpty)
        #expect(doc["models"]?["qwen2.5-7b-instruct"]?["model_path"]?.stringValue == #"..\models\qwen2.5-7b-instruct-q4_k_m.gguf"#)
    }

    @Test func writingKeepsKeyOrderAndRoundTrips() throws {
        let text = readFile(repositoryRoot + "/config/app_config.json")!
        let doc = try JSONParser.parse(text)
        let written = JSONWriter.write(doc, pretty: true)
        #expect(try JSONParser.parse(written) == doc)
        #expect(doc.objectValue?.keys.first == "proxies")
        #expect(JSONWriter.write(.object(JSONObject([("b", .int(1)), ("a", .double(0.6)), ("s", .string("q\"\\\n\u{1}"))])), pretty: false)
                == #"{"b":1,"a":0.6,"s":"q\"\\\n\u0001"}"#)
    }

    /// The committed JSON Schemas are generated from the same shapes the validator checks.
    @Test func committedSchemasMatchTheValidatorsShapes() throws {
        for (file, shape, title) in [("app_config.schema.json", ConfigShapes.app, "Llama Runner app_config.json"),
                                     ("models_config.schema.json", ConfigShapes.models, "Llama Runner models_config.json")] {
            let committed = try JSONParser.parse(try #require(readFile(repositoryRoot + "/config/schema/" + file), "config/schema/\(file) is missing"))
            let generated = ConfigShapes.schema(shape, title: title, id: "https://llama-runner.local/schema/\(file)")
            #expect(committed == generated, "config/schema/\(file) is out of date: run `model-registry --print-schema` (see docs)")
        }
    }

    /// The services test patterns without Swift's Regex; each predicate must agree with the expression
    /// the JSON Schema carries, on ordinary, edge and hostile inputs.
    @Test(arguments: [TextPattern.percentage, TextPattern.optionName, TextPattern.modelID, TextPattern.peerName, TextPattern.httpURL])
    func textPatternsAgreeWithTheirRegularExpressions(pattern: TextPattern) throws {
        let samples = ["", "80%", "12.5%", "0%", "100", "%", ".5%", "5.%", "1.2.3%", "١٢%", " 80%", "80 %", "80%%",
                       "flash_attn", "n-gpu-layers", "N-GPU", "_x", "-x", "a", "9b", "a b", "ä",
                       "smollm2:135m", "model/with/slash", "with space", "tab\there", "quo\"te", "ünïcödé-名前",
                       "e\u{301}", String(repeating: "x", count: 200), String(repeating: "x", count: 201), "line\nbreak", "nb\u{a0}sp",
                       "box2", "Box.2_a-b", ".box", String(repeating: "p", count: 64), String(repeating: "p", count: 65),
                       "http://10.0.0.2:8080", "https://vllm.lab/v1", "http://", "http:///v1", "ftp://x", "http://a b", "http://user@h",
                       "https://h/v1?x=1", "http://h/ü", "HTTP://h"]
        let regex = try Regex("^(?:\(pattern.regex))$")
        for s in samples {
            #expect(pattern.matches(s) == (s.wholeMatch(of: regex) != nil), "\(pattern.regex) on \(s.debugDescription)")
        }
    }
}
