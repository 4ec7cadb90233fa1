"""The committed JSON Schemas (config/schema/) accept and reject the same documents as the registry's
validator: the shared cases in Tests/Fixtures/config_cases.json are checked here with jsonschema and
in Tests/ModelRegistryTests/ConfigCaseTests.swift with the validator."""
import json
import os

import jsonschema
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = {
    name: json.load(open(os.path.join(ROOT, "config", "schema", name.replace(".json", ".schema.json"))))
    for name in ("app_config.json", "models_config.json")
}
CASES = json.load(open(os.path.join(ROOT, "Tests", "Fixtures", "config_cases.json")))


def document(case):
    if "document" in case:
        return case["document"]
    return json.load(open(os.path.join(ROOT, case["path"])))


def test_the_schemas_are_valid_draft_2020_12():
    for schema in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_schema_agrees_with_the_case(case):
    validator = jsonschema.Draft202012Validator(SCHEMAS[case["file"]])
    errors = list(validator.iter_errors(document(case)))
    assert (not errors) == case["valid"], [e.message for e in errors]
