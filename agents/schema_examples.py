"""A deterministic value that satisfies a JSON Schema: what the echo agent puts in tool-call
arguments and structured outputs."""

from __future__ import annotations

from typing import Any

_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_for_schema(schema: Any, *, text: str = "echo", root: Any = None, depth: int = 0) -> Any:
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 12:
        return None
    if "$ref" in schema:
        return example_for_schema(_resolve(schema["$ref"], root), text=text, root=root, depth=depth + 1)
    for keyword in ("const", "default"):
        if keyword in schema:
            return schema[keyword]
    if schema.get("enum"):
        return schema["enum"][0]
    for keyword in ("anyOf", "oneOf"):
        if schema.get(keyword):
            return example_for_schema(schema[keyword][0], text=text, root=root, depth=depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example_for_schema(part, text=text, root=root, depth=depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    return _BUILDERS.get(kind, lambda *_: None)(schema, text, root, depth)


def _resolve(ref: str, root: Any) -> Any:
    node = root
    for part in ref.lstrip("#/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _object(schema: dict, text: str, root: Any, depth: int) -> dict:
    return {
        name: example_for_schema(sub, text=text, root=root, depth=depth + 1)
        for name, sub in schema.get("properties", {}).items()
    }


def _array(schema: dict, text: str, root: Any, depth: int) -> list:
    count = max(schema.get("minItems", 0), 1 if "items" in schema else 0)
    item = example_for_schema(schema.get("items", {}), text=text, root=root, depth=depth + 1)
    return [item] * count


def _string(schema: dict, text: str, root: Any, depth: int) -> str:
    value = _FORMATS.get(schema.get("format", ""), text)
    value = value[: schema.get("maxLength", len(value))]
    return value.ljust(schema.get("minLength", 0), "x")


def _number(schema: dict, text: str, root: Any, depth: int) -> float | int:
    integer = schema.get("type") == "integer"
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = 0 if low is None else low + (1 if "exclusiveMinimum" in schema else 0)
    if high is not None and value > high:
        value = high - (1 if "exclusiveMaximum" in schema else 0)
    return int(value) if integer else value


_BUILDERS = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": lambda *_: True,
    "null": lambda *_: None,
}
