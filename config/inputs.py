"""What the API accepts as input, checked in one place for every endpoint before any work:

- JSON bodies nest arrays and objects at most MAX_JSON_DEPTH levels deep (the parser recurses
  once per level);
- no string of a body, key or value, holds a NUL or a lone surrogate (PostgreSQL can store
  neither, and SQLite would keep what PostgreSQL refuses), and every number is finite (JSON has
  no Infinity: 1e400 would be stored as a float no JSON reader takes back);
- ids in paths are made of the characters Parley's ids are made of;
- numbers in query strings and headers are ASCII digits (str.isdigit() also takes "²", which
  int() refuses);
- a body of Parley's own endpoints names only fields the endpoint defines (refuse_unknown_fields).

The plain async views call json_body_parse; DRF's views get it through JsonBodyParser
(REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from itertools import accumulate
from typing import IO, Any

from rest_framework import serializers
from rest_framework.parsers import JSONParser

from config.errors import InvalidJson, InvalidRequest, invalid_value

MAX_JSON_DEPTH = 64

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_body_parse(raw: bytes) -> Any:
    """The JSON value of a request body; InvalidJson when it is not JSON (UTF-8) or nests too
    deep, InvalidRequest naming the field when a string or number of it cannot be stored."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"The request body is not valid JSON: {exc}") from None
    if not text.strip():
        raise InvalidJson("The request body is empty; expected a JSON object.")
    floats = _FloatWatch()
    try:
        # The parser recurses once per level, and stops (RecursionError) long before the stack
        # runs out. The depth is checked after, on the parsed value: a walk in Python, which other
        # threads and the event loop can interrupt, where scanning the whole text with regular
        # expressions first held the interpreter lock for tens of milliseconds per megabyte.
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=floats)
    except (ValueError, RecursionError) as exc:
        _refuse_too_deep(json_nesting_depth(text))  # as deep a body is named so, valid or not
        raise InvalidJson(f"The request body is not valid JSON: {exc}") from None
    _refuse_too_deep(_value_depth(value))
    # Walking the whole value costs as much as parsing it: only when it may hold what the walk
    # looks for. JSON text can spell a NUL or a surrogate only as an escape (the parser refuses raw
    # control characters, UTF-8 decoding raw surrogates), and a number out of range only as a float.
    if floats.non_finite or _NUL_OR_SURROGATE_ESCAPE.search(text):
        problem = _first_unstorable(value, ())
        if problem is not None:
            raise invalid_value(*problem)
    return value


_NUL_OR_SURROGATE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class _FloatWatch:
    """json's parse_float that notes whether a number was out of a float's range (1e400)."""

    def __init__(self) -> None:
        self.non_finite = False

    def __call__(self, text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            self.non_finite = True
        return number


def _refuse_too_deep(depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidJson(
            f"The request body nests arrays and objects {depth} levels deep; the limit is {MAX_JSON_DEPTH}."
        )


def _value_depth(value: Any) -> int:
    """How deep the arrays and objects of a parsed JSON value nest (json_nesting_depth of its text)."""
    deepest = 0
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        container, level = pending.pop()
        deepest = max(deepest, level)
        children = container.values() if isinstance(container, dict) else container
        pending.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def json_nesting_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest, counted without parsing it: brackets
    inside strings do not count. Linear in the text, whatever its shape."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _first_unstorable(value: Any, loc: tuple) -> tuple[tuple, str, str] | None:
    """Where the first string that cannot be stored, or number that is not finite, is; its
    message and code. (Recursion is bounded: the depth was checked first.)"""
    if isinstance(value, str):
        problem = text_problem(value)
        return (loc, *problem) if problem else None
    if isinstance(value, float) and not math.isfinite(value):
        return loc, "Number out of range: JSON numbers must be finite.", "number_out_of_range"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key)
            if problem:  # named by the object that holds the key: the key itself is unprintable
                return loc, f"A key of this object is invalid. {problem[0]}", problem[1]
            found = _first_unstorable(item, (*loc, key))
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_unstorable(item, (*loc, index))
            if found:
                return found
    return None


def text_problem(text: str) -> tuple[str, str] | None:
    """Why a text cannot be stored, as DRF's own string fields word it (message, code); None
    when it can."""
    if "\x00" in text:
        return "Null characters are not allowed.", "null_characters_not_allowed"
    surrogate = _SURROGATE.search(text)
    if surrogate:
        return (
            f"Surrogate characters are not allowed: U+{ord(surrogate.group()):X}.",
            "surrogate_characters_not_allowed",
        )
    return None


# What stands for a character that cannot be stored, as a decoder's errors="replace" writes it.
REPLACEMENT_CHARACTER = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` (text, or JSON made of lists and dicts) with every NUL and lone surrogate, in
    strings and keys, replaced by U+FFFD: for what Parley does not refuse but passes on and keeps,
    such as an agent's answer or a tool's result, which PostgreSQL would refuse to store (its text
    and jsonb hold neither). Anything else is returned as it is."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT_CHARACTER, value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


class JsonBodyParser(JSONParser):
    """DRF's JSON parser with the checks above."""

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        return json_body_parse(stream.read())


def ascii_int(text: str, *, max_digits: int = 18) -> int | None:
    """The number 1 to `max_digits` ASCII digits spell (18: it fits a 64-bit integer), else None."""
    if 1 <= len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


class PathIdConverter:
    """An id in a path (<id:...>): the characters of every id Parley hands out or accepts (session
    ids, slugs, turn ids, numeric ids). Any other text names nothing, so the path does not
    resolve (404) and no query is made with text the database would refuse (a NUL)."""

    regex = r"[A-Za-z0-9._:\-]{1,128}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


# --- fields a body may not name -----------------------------------------------------------------

# Who owns an object and where it lives are the server's to say: naming them is refused first,
# so that a client believing it set them learns otherwise.
SERVER_SET_FIELDS = (
    "organization",
    "organization_id",
    "owner",
    "owner_id",
    "created_by",
    "created_by_id",
    "user",
    "user_id",
)
UNKNOWN_PARAMETER = "unknown_parameter"
UNKNOWN_FIELD = "unknown_field"


def refuse_unknown_fields(
    data: Any,
    *,
    known: Iterable[str],
    ignored: frozenset[str] = frozenset(),
    server_set: tuple[str, ...] = (),
    refusal: str = UNKNOWN_FIELD,
) -> Any:
    """The body without its `ignored` fields (the answer's own read-only ones, so that sending an
    answer back is harmless), or a 400 for a field the endpoint does not define: Parley's own
    endpoints refuse a typo instead of ignoring it (the chat request, as OpenAI's, ignores them).

    A field of `server_set` is refused first ("Set by the server"). Then, as each API documents
    it: UNKNOWN_FIELD makes every unknown field an "Unknown field." validation error
    (`invalid_value`: the Agents, API keys and members APIs); UNKNOWN_PARAMETER answers the
    first one as `unknown_parameter`, listing the known ones (the Sessions and settings APIs)."""
    if not isinstance(data, dict):
        return data
    known = set(known)
    named_server_set = [name for name in server_set if name in data]
    if named_server_set:
        raise serializers.ValidationError(
            {name: ["Set by the server; it cannot be given in the request."] for name in named_server_set}
        )
    if refusal == UNKNOWN_PARAMETER:
        for name in data:
            if name not in known and name not in ignored:
                raise _unknown_parameter(name, sorted(known))
    else:
        unknown = sorted(set(data) - known - ignored)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
    return {key: value for key, value in data.items() if key not in ignored}


def _unknown_parameter(name: str, known: list[str]) -> InvalidRequest:
    message = f"Unknown parameter: '{name}'. Known parameters: {', '.join(known)}."
    detail = [{"loc": ["body", name], "msg": "Unknown parameter.", "type": UNKNOWN_PARAMETER}]
    return InvalidRequest(message, param=name, code=UNKNOWN_PARAMETER, detail=detail)
