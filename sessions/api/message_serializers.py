"""Validation of the messages of a chat completion request, with OpenAI's types: roles, content
and its parts within their limits, tool calls, and how many a request may hold."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from rest_framework import serializers

from sessions.api.fields import StrictCharField

FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
PART_TYPES_BY_ROLE = {
    "system": {"text"},
    "developer": {"text"},
    "tool": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
}
_PART_PAYLOAD = {"text": str, "refusal": str, "image_url": dict, "input_audio": dict, "file": dict}


class _FullMatchValidator(RegexValidator):
    """A RegexValidator (drf-spectacular puts its pattern in the schema) that matches the whole
    value: Python's `$` also matches before a trailing newline, which JSON Schema's does not."""

    def __call__(self, value: Any) -> None:
        if not self.regex.fullmatch(str(value)):
            raise ValidationError(self.message, code=self.code)


function_name_validator = _FullMatchValidator(
    FUNCTION_NAME, "Must be 1-64 characters of a-z, A-Z, 0-9, underscores and dashes."
)


def nullable_list(child: serializers.Serializer, **kwargs: Any) -> serializers.ListSerializer:
    """An optional list that may be null, of items that may not: DRF's `many=True` hands
    `allow_null` to the items too, and a null tool call or tool would then reach the code as None."""
    return serializers.ListSerializer(child=child, required=False, allow_null=True, **kwargs)


class ContentField(serializers.Field):
    """A message's content: a string or a non-empty list of content parts."""

    def to_internal_value(self, data: Any) -> str | list[dict[str, Any]]:
        if isinstance(data, str):
            _check_content_length(len(data))
            return data
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected a string or an array of content parts.")
        if not data:
            raise serializers.ValidationError("An array of content parts must not be empty.")
        errors: dict[int, Any] = {}
        for index, part in enumerate(data):
            problem = _content_part_problem(part)
            if problem:
                errors[index] = problem
        if errors:
            raise serializers.ValidationError(errors)
        _check_content_length(sum(len(part[part["type"]]) for part in data if part["type"] in _TEXT_PARTS))
        return data

    def to_representation(self, value: Any) -> Any:
        return value


_TEXT_PARTS = ("text", "refusal")


def _check_content_length(characters: int) -> None:
    """A message's text (a string, or its text parts together) within PARLEY_MAX_CONTENT_CHARS."""
    limit = settings.PARLEY_MAX_CONTENT_CHARS
    if characters > limit:
        raise serializers.ValidationError(
            f"Ensure this content has no more than {limit} characters of text (it has {characters}).",
            code="max_length",
        )


def _content_part_problem(part: Any) -> dict[str, list[str]] | list[str] | None:
    if not isinstance(part, dict):
        return ["Expected a content part object."]
    kind = part.get("type")
    if not isinstance(kind, str) or kind not in _PART_PAYLOAD:  # an object or a list is no type name
        return {"type": [f"Unknown content part type {kind!r}; expected one of {sorted(_PART_PAYLOAD)}."]}
    if not isinstance(part.get(kind), _PART_PAYLOAD[kind]):
        expected = "a string" if _PART_PAYLOAD[kind] is str else "an object"
        return {kind: [f"Expected {expected}."]}
    if kind == "image_url" and not isinstance(part[kind].get("url"), str):
        return {kind: {"url": ["This field is required."]}}
    return None


class FunctionCallSerializer(serializers.Serializer):
    name = StrictCharField(validators=[function_name_validator])
    arguments = StrictCharField(allow_blank=True)


class ToolCallSerializer(serializers.Serializer):
    id = StrictCharField(max_length=128)
    type = serializers.ChoiceField(choices=["function"], default="function")
    function = FunctionCallSerializer()


# Roles whose message may be just a role and a text.
_TEXT_ONLY_ROLES = frozenset({"system", "developer", "user", "assistant"})


class MessageListSerializer(serializers.ListSerializer):
    """A request's messages. Validating a message, or a tool call, takes time: before any of them
    is validated, their number is held to `max_length` (PARLEY_MAX_MESSAGES_PER_REQUEST) and so
    is the number of tool calls they hold together (each call is answered by a tool message, so
    a transcript within the first limit is within the second).

    Most messages are only a role and a text (clients resend whole transcripts of them): such a
    message is taken as MessageSerializer would take it, without its field machinery, which costs
    a hundred times more. Every other message, and any that is not valid, goes through it."""

    def run_child_validation(self, data: Any) -> dict[str, Any]:
        if (
            type(data) is dict
            and data.keys() == {"role", "content"}
            and type(data["role"]) is str
            and data["role"] in _TEXT_ONLY_ROLES
            and type(data["content"]) is str
            and len(data["content"]) <= settings.PARLEY_MAX_CONTENT_CHARS
        ):
            return {"role": data["role"], "content": data["content"]}
        return super().run_child_validation(data)

    def to_internal_value(self, data: Any) -> list[dict[str, Any]]:
        limit = self.max_length
        if limit is not None and isinstance(data, list) and len(data) <= limit:
            calls = sum(
                len(message["tool_calls"])
                for message in data
                if isinstance(message, dict) and isinstance(message.get("tool_calls"), list)
            )
            if calls > limit:
                raise serializers.ValidationError(
                    f"Ensure these messages hold no more than {limit} tool calls in all (they hold {calls}).",
                    code="max_length",
                )
        return super().to_internal_value(data)


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=[*PART_TYPES_BY_ROLE, "function"])
    content = ContentField(required=False, allow_null=True)
    name = StrictCharField(required=False, max_length=128)
    tool_calls = nullable_list(ToolCallSerializer())
    tool_call_id = StrictCharField(required=False, max_length=128)
    function_call = FunctionCallSerializer(required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        role = attrs["role"]
        if role == "function":  # deprecated function-calling: its results are tool messages
            if not attrs.get("name"):
                raise serializers.ValidationError({"name": ["A function message needs the function's name."]})
            attrs = {**attrs, "role": "tool", "tool_call_id": f"call_{attrs['name']}"}
            role = "tool"
        if attrs.get("function_call"):
            if role != "assistant":
                raise serializers.ValidationError(
                    {"function_call": ["Only assistant messages carry a function_call."]}
                )
            call = attrs.pop("function_call")
            attrs["tool_calls"] = [{"id": f"call_{call['name']}", "type": "function", "function": dict(call)}]
        content = attrs.get("content")
        if content is None and not (role == "assistant" and attrs.get("tool_calls")):
            raise serializers.ValidationError(
                {"content": [serializers.ErrorDetail("This field is required.", code="required")]}
            )
        if isinstance(content, list):
            allowed = PART_TYPES_BY_ROLE[role]
            for index, part in enumerate(content):
                if part["type"] not in allowed:
                    raise serializers.ValidationError(
                        {
                            "content": {
                                index: {"type": [f"A {role} message may not contain '{part['type']}' parts."]}
                            }
                        }
                    )
        if attrs.get("tool_calls") and role != "assistant":
            raise serializers.ValidationError({"tool_calls": ["Only assistant messages carry tool_calls."]})
        if role == "tool" and not attrs.get("tool_call_id"):
            raise serializers.ValidationError(
                {
                    "tool_call_id": [
                        serializers.ErrorDetail("A tool message needs tool_call_id.", code="required")
                    ]
                }
            )
        return _message(attrs)

    class Meta:
        list_serializer_class = MessageListSerializer


def _message(attrs: dict[str, Any]) -> dict[str, Any]:
    message = {"role": attrs["role"], "content": attrs.get("content")}
    for key in ("name", "tool_call_id"):
        if attrs.get(key):
            message[key] = attrs[key]
    if attrs.get("tool_calls"):
        message["tool_calls"] = [
            {"id": call["id"], "type": "function", "function": dict(call["function"])}
            for call in attrs["tool_calls"]
        ]
    return message
