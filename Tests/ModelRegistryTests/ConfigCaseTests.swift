import Testing
@testable import ModelRegistry
@testable import Shared

/// The shared cases in Tests/Fixtures/config_cases.json, checked here with the validator and in
/// Tests/Python/test_config_schema.py with Python's jsonschema against config/schema/: both must agree.
@Suite struct ConfigCaseTests {
    struct Case: CustomStringConvertible {
        let name: String
        let file: String
        let document: JSONValue
        let valid: Bool
        let error: String?
        var description: String { name }
    }

    static let cases: [Case] = {
        let list = (try? JSONParser.parse(readFile(repositoryRoot + "/Tests/Fixtures/config_cases.json") ?? "[]"))?.arrayValue ?? []
        return list.map { c in
            let document = c["document"] ?? (try? JSONParser.parse(readFile(repositoryRoot + "/" + (c["path"]?.stringValue ?? "")) ?? "null")) ?? .null
            return Case(name: c["name"]?.stringValue ?? "?", file: c["file"]?.stringValue ?? "?", document: document,
                        valid: c["valid"]?.boolValue ?? false, error: c["error"]?.stringValue)
        }
    }()

    @Test func theCasesAreThere() { #expect(Self.cases.count >= 20) }

    @Test(arguments: cases)
    func validatorAgreesWithTheCase(_ c: Case) {
        var issues: [ConfigIssue] = []
        let shape = c.file == "app_config.json" ? ConfigShapes.app : ConfigShapes.models
        shape.validate(c.document, at: JSONPath(), file: c.file, into: &issues)
        let errors = issues.filter { $0.severity == .error }.map(\.description)
        #expect(errors.isEmpty == c.valid, "\(c.name): \(errors)")
        if let expected = c.error { #expect(errors.first == expected) }
    }
}
