"""How each operation and field is described: the AutoSchema and the extensions for Parley's own
fields. drf-spectacular reads DRF views only, and the chat completions and turn event streams are
plain async Django views (they hold no thread while a turn runs), so the generator (generator.py)
reads the real urlpatterns with those callbacks swapped for documentation-only DRF views at the
same paths (plain_views.py). What each endpoint takes and answers is the `@extend_schema` on its view."""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

from django.conf import settings
from django.urls import URLResolver, get_resolver
from drf_spectacular.extensions import (
    OpenApiAuthenticationExtension,
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from drf_spectacular.generators import EndpointEnumerator
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from agents.api.serializers import READ_ONLY_NAMES, DefaultParamsSerializer
from agents.backends import BACKENDS
from config.openapi.parts import LINKS
from sessions.api.fields import METADATA_KEY_LENGTH as _METADATA_KEY_LENGTH
from sessions.api.fields import METADATA_MAX_KEYS as _METADATA_MAX_KEYS
from sessions.api.message_serializers import PART_TYPES_BY_ROLE

BEARER = "bearerAuth"


@functools.cache
def route_names() -> dict[str, str]:
    """OpenAPI path ("/v1/sessions/{session_id}") -> URL name, for every route. A route whose view
    an earlier route already serves (/api/v1/chat/completions…) is an alias: it takes that name."""
    enumerator = EndpointEnumerator(patterns=[])
    names: dict[str, str] = {}
    endpoint_names: dict[Any, str] = {}

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            regex = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, regex)
            elif pattern.name:
                name = endpoint_names.setdefault(pattern.callback, pattern.name)
                names.setdefault(enumerator.get_path_from_regex(regex), name)

    walk(get_resolver().url_patterns, "")
    return names


@functools.cache
def canonical_paths() -> dict[str, str]:
    """URL name -> its first path: the others (/api/v1/chat/completions…) are aliases."""
    canonical: dict[str, str] = {}
    for path, name in route_names().items():
        canonical.setdefault(name, path)
    return canonical


class ParleyAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, with what it does not do by itself: OpenAPI links (parts.py),
    operation ids of their own for a route's aliases, a PATCH that validates its body whole (a view
    with `patch_validates_whole_body`), and the length limits of a nested `many=True` serializer."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        for status, links in LINKS.get(operation["operationId"], {}).items():
            operation["responses"][str(status)]["links"] = copy.deepcopy(links)
        canonical = canonical_paths().get(route_names().get(self.path, ""))
        if canonical and canonical != self.path:
            alias = re.sub("[^A-Za-z0-9]+", "_", self.path).strip("_")
            operation["operationId"] = f"{operation['operationId']}_{alias}"
        return operation

    def _get_request_for_media_type(self, serializer: Any, direction: str = "request") -> Any:
        if self.method != "PATCH" or not getattr(self.view, "patch_validates_whole_body", False):
            return super()._get_request_for_media_type(serializer, direction)
        # A PATCH whose body is validated whole (a member's role): not drf-spectacular's partial copy.
        self.method = "PUT"
        try:
            return super()._get_request_for_media_type(serializer, direction)
        finally:
            self.method = "PATCH"

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        super()._insert_field_validators(field, schema)
        # drf-spectacular reads the length limits of a ListField, not of a nested `many=True` one.
        if isinstance(field, serializers.ListSerializer):
            if not field.allow_empty:
                schema["minItems"] = max(schema.get("minItems", 0), 1)
            if field.min_length is not None:
                schema["minItems"] = max(schema.get("minItems", 0), field.min_length)
            if field.max_length is not None:
                schema["maxItems"] = field.max_length


# --- extensions: authentication and the fields drf-spectacular cannot read ------------------------


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = BEARER

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`sk-parley-…`, bound to one organization and limited to its "
            "scopes) or a user's JWT access token from POST /v1/auth/token (acting in the "
            "organization of the `X-Organization` header, else the user's default one).",
        }


class ContentFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "sessions.api.message_serializers.ContentField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        # Each part carries the payload its `type` names, as serializers.ContentField checks. (The
        # text of the parts of one message counts together against the limit, which JSON Schema
        # cannot say: each part is held to it alone.)
        text = {"type": "string", "maxLength": settings.PARLEY_MAX_CONTENT_CHARS}
        payloads = {
            "text": text,
            "image_url": {
                "type": "object",
                "properties": {"url": {"type": "string"}},
                "required": ["url"],
                "description": "`url` (an http(s) or data URL) and, optionally, `detail`.",
            },
            "input_audio": {"type": "object", "additionalProperties": {}},
            "file": {"type": "object", "additionalProperties": {}},
            "refusal": text,
        }
        part = {
            "description": "A content part: `text` (any role), `image_url`, `input_audio` and `file` "
            "(user), `refusal` (assistant).",
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"type": {"const": kind}, kind: payload},
                    "required": ["type", kind],
                }
                for kind, payload in payloads.items()
            ],
        }
        return {
            "oneOf": [text, {"type": "array", "items": part, "minItems": 1}],
            "description": "A string, or an array of content parts. May be null on an assistant "
            f"message that has `tool_calls`. At most {settings.PARLEY_MAX_CONTENT_CHARS} characters of "
            "text, the string or the text and refusal parts together.",
        }


class MessageSchema(OpenApiSerializerExtension):
    """A message, with what serializers.MessageSerializer.validate asks of each role: the parts
    its content may hold; `content` required, except on an assistant message that calls tools;
    `tool_call_id` on a tool message, `name` on a (deprecated) function message, which is then a
    tool message; tool calls (`tool_calls`, deprecated `function_call`) on assistant messages only."""

    target_class = "sessions.api.message_serializers.MessageSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        part_types = {**PART_TYPES_BY_ROLE, "function": PART_TYPES_BY_ROLE["tool"]}
        schema["oneOf"] = [_message_role(role, sorted(types)) for role, types in part_types.items()]
        return schema


def _message_role(role: str, part_types: list[str]) -> dict[str, Any]:
    content = {"type": ["string", "array"], "items": {"properties": {"type": {"enum": part_types}}}}
    branch: dict[str, Any] = {"properties": {"role": {"const": role}, "content": content}}
    if role == "assistant":
        # Content may be null (or left out) when the message calls tools.
        content["type"].append("null")
        branch["anyOf"] = [
            {"required": ["content"], "properties": {"content": {"type": ["string", "array"]}}},
            {"required": ["tool_calls"], "properties": {"tool_calls": {"type": "array", "minItems": 1}}},
            {"required": ["function_call"], "properties": {"function_call": {"type": "object"}}},
        ]
        return branch
    branch["properties"].update(tool_calls={"maxItems": 0}, function_call={"type": "null"})
    branch["required"] = ["content", *{"tool": ["tool_call_id"], "function": ["name"]}.get(role, [])]
    return branch


# top_logprobs (not null) needs logprobs to be true.
TOP_LOGPROBS_NEED_LOGPROBS = {
    "if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer"}}},
    "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
}


class ChatCompletionRequestSchema(OpenApiSerializerExtension):
    """The chat request, with the rules of ChatCompletionRequestSerializer.validate that JSON
    Schema can state. Those it cannot: `tool_choice` naming a function must name one of `tools`,
    whose names are unique; `session_id`, its synonyms and `model: "agent:session"` must name the
    same session; a `tool` message must answer a tool call still open in the session or earlier in
    the request (the turn's check); without `model`, the organization needs a default agent."""

    target_class = "sessions.api.chat_serializers.ChatCompletionRequestSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        non_empty = {"type": "array", "minItems": 1}
        schema["allOf"] = [
            TOP_LOGPROBS_NEED_LOGPROBS,
            # stream_options is only allowed when stream is not false.
            {
                "if": {"required": ["stream_options"], "properties": {"stream_options": {"type": "object"}}},
                "then": {"properties": {"stream": {"not": {"const": False}}}},
            },
            # Either tools or the deprecated functions, not both.
            {
                "not": {
                    "required": ["tools", "functions"],
                    "properties": {"tools": non_empty, "functions": non_empty},
                }
            },
            # tool_choice other than "none" needs tools (or functions).
            {
                "if": {
                    "required": ["tool_choice"],
                    "properties": {"tool_choice": {"not": {"enum": [None, "none"]}}},
                },
                "then": {
                    "anyOf": [
                        {"required": ["tools"], "properties": {"tools": non_empty}},
                        {"required": ["functions"], "properties": {"functions": non_empty}},
                    ]
                },
            },
        ]
        return schema


class ResponseFormatSchema(OpenApiSerializerExtension):
    """`json_schema` is required with `type: json_schema` (ResponseFormatSerializer.validate)."""

    target_class = "sessions.api.chat_serializers.ResponseFormatSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["if"] = {"required": ["type"], "properties": {"type": {"const": "json_schema"}}}
        schema["then"] = {"required": ["json_schema"]}
        return schema


class StopFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "sessions.api.chat_serializers.StopField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "maxItems": 4},
            ]
        }


class OneOfFieldSchema(OpenApiSerializerFieldExtension):
    """A string or an object (`tool_choice`, `function_call`, `conversation`)."""

    target_class = "sessions.api.fields.OneOfField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        field = self.target
        choices = []
        if field.string_field is not None:
            choices.append(auto_schema._map_serializer_field(field.string_field, direction))
        if field.object_serializer is not None:
            choices.append(auto_schema.resolve_serializer(field.object_serializer, direction).ref)
        return {"oneOf": choices}


class JsonObjectFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "sessions.api.fields.JsonObjectField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": {}}


class DefaultParamsFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "agents.api.serializers.DefaultParamsField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return auto_schema.resolve_serializer(DefaultParamsSerializer, direction).ref


class ConstantSchema(OpenApiSerializerFieldExtension):
    # Marked here, made an enum by the hook below: drf-spectacular's enum hook would otherwise
    # turn each `object` constant into a component of its own.
    target_class = "config.shapes.Constant"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return {"type": "string", "x-parley-constant": self.target.value}


class ErrorObjectFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "config.shapes.ErrorObjectField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return {"allOf": [{"$ref": "#/components/schemas/ErrorObject"}]}


class MetadataFieldSchema(OpenApiSerializerFieldExtension):
    """A session's metadata: its key limits are on the keys, which only JSON Schema can describe."""

    target_class = "sessions.api.fields.MetadataField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {
            **schema,
            "propertyNames": {"minLength": 1, "maxLength": _METADATA_KEY_LENGTH},
            "maxProperties": _METADATA_MAX_KEYS,
        }


# --- input serializers that refuse unknown fields -------------------------------------------------


class ClosedObjectSchema(OpenApiSerializerExtension):
    """An input serializer that refuses fields it does not define: `additionalProperties: false`.
    The fields it accepts and ignores (the answer's own read-only fields, so that sending an answer
    back is harmless) are listed as read-only."""

    target_class = "sessions.api.session_serializers.ClosedSerializer"
    match_subclasses = True

    def ignored_fields(self) -> frozenset[str]:
        return self.target.ignored_fields

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        properties = schema.setdefault("properties", {})
        for name in sorted(self.ignored_fields()):
            properties[name] = {"readOnly": True, "description": "Ignored (a field of the answer)."}
        schema["additionalProperties"] = False
        return schema


class AgentInputSchema(ClosedObjectSchema):
    """An agent: its backend one of the registry's (agents/backends); its `backend_config` is
    checked by that backend."""

    target_class = "agents.api.serializers.AgentInputSerializer"
    match_subclasses = False

    def ignored_fields(self) -> frozenset[str]:
        return READ_ONLY_NAMES

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = super().map_serializer(auto_schema, direction)
        schema["properties"]["backend"]["enum"] = list(BACKENDS)
        return schema


class DefaultParamsSchema(OpenApiSerializerExtension):
    """An agent's default chat parameters, with the chat request's rule that a default can break."""

    target_class = "agents.api.serializers.DefaultParamsSerializer"

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["allOf"] = [TOP_LOGPROBS_NEED_LOGPROBS]
        return schema


class ClosedApiKeyInputSchema(ClosedObjectSchema):
    target_class = "accounts.api.keys.ApiKeyInputSerializer"
    match_subclasses = False

    def ignored_fields(self) -> frozenset[str]:
        return frozenset()


class ClosedMemberAddSchema(ClosedApiKeyInputSchema):
    target_class = "accounts.api.members.MemberAddSerializer"


class ClosedMemberChangeSchema(ClosedApiKeyInputSchema):
    target_class = "accounts.api.members.MemberChangeSerializer"
