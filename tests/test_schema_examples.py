from agents.schema_examples import example_for_schema


def test_objects_get_every_declared_property():
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}}}
    assert example_for_schema(schema, text="hi") == {"a": "hi", "b": True}


def test_bounds_enums_formats_and_lengths_are_respected():
    assert example_for_schema({"type": "integer", "minimum": 3, "maximum": 9}) == 3
    assert example_for_schema({"type": "number", "exclusiveMinimum": 0}) == 1
    assert example_for_schema({"type": "integer", "maximum": -5}) == -5
    assert example_for_schema({"enum": ["b", "a"]}) == "b"
    assert example_for_schema({"type": "string", "format": "date"}) == "2026-01-01"
    assert example_for_schema({"type": "string", "minLength": 6}, text="ab") == "abxxxx"
    assert example_for_schema({"type": "string", "maxLength": 2}, text="abcdef") == "ab"


def test_refs_unions_arrays_and_nullable_types():
    schema = {
        "type": "object",
        "$defs": {"tag": {"type": "string", "const": "x"}},
        "properties": {
            "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 2},
            "maybe": {"type": ["null", "integer"]},
            "either": {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
        },
    }
    assert example_for_schema(schema) == {"tags": ["x", "x"], "maybe": 0, "either": True}
