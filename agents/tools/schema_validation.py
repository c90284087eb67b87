"""JSON Schema validation of model output against a tenant's schemas, with a time bound on the
regular expressions those schemas hold (`pattern`, `patternProperties`). Python's `re` can take
exponential time on a crafted pattern (ReDoS), and both the pattern and the text it runs on come
from outside: the tenant writes the schema, the model writes the arguments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import regex
from jsonschema.exceptions import ValidationError

# One pattern gets this long for one string; past it the value is refused as not matching.
PATTERN_SECONDS = 0.1


def _search(pattern: str, text: str) -> bool:
    try:
        return regex.search(pattern, text, timeout=PATTERN_SECONDS) is not None
    except TimeoutError:
        raise ValidationError(
            f"the pattern {pattern!r} took longer than {PATTERN_SECONDS:g} s on this value"
        ) from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = _search(pattern, instance)
    except ValidationError as slow:
        yield slow
        return
    if not matched:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            try:
                matched = _search(pattern, name)
            except ValidationError as slow:
                yield slow
                continue
            if matched:
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


BoundedValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties},
)


def schema_errors(schema: dict[str, Any], instance: Any) -> Iterator[ValidationError]:
    return BoundedValidator(schema).iter_errors(instance)


def schema_pattern_problem(schema: Any) -> str | None:
    """Why a regular expression of the schema is not one Parley can run, or None."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        patterns = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        if isinstance(node.get("patternProperties"), dict):
            patterns += list(node["patternProperties"])
        for pattern in patterns:
            try:
                regex.compile(pattern)
            except regex.error as error:
                return f"the pattern {pattern!r} is not a valid regular expression: {error}"
        stack.extend(node.values())
    return None
