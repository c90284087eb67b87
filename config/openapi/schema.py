"""How the schema is generated. drf-spectacular reads DRF views only, and the chat completions and
turn event streams are plain async Django views (they hold no thread while a turn runs). So the
schema is generated from the real urlpatterns with those callbacks swapped for documentation-only
DRF views at the same paths; the swap exists only for the generator, never for traffic. What each
endpoint takes and answers is the table in operations.py, keyed like the permission table by URL
name and method."""

from __future__ import annotations

import functools
import re
from typing import Any

from django.urls import URLPattern, URLResolver
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension
from drf_spectacular.generators import EndpointEnumerator, SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.health import healthz, readyz
from config.openapi.operations import OPERATIONS, Operation
from sessions.api.views import chat_completions, nlx_chat_completions, turn_events

BEARER = "bearerAuth"

# --- the views that document the plain Django views -------------------------------------------


class _DocumentationOnly(APIView):
    """Stands for a plain Django view in the schema; never routed (see documented_urlpatterns)."""

    def _never_routed(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise AssertionError(f"{type(self).__name__} documents an endpoint; it serves no requests.")


class ChatCompletionsDocumentation(_DocumentationOnly):
    post = _DocumentationOnly._never_routed


class NlxChatCompletionsDocumentation(_DocumentationOnly):
    post = _DocumentationOnly._never_routed


class TurnEventsDocumentation(_DocumentationOnly):
    get = _DocumentationOnly._never_routed


class HealthDocumentation(_DocumentationOnly):
    authentication_classes = []
    get = _DocumentationOnly._never_routed


DOCUMENTATION_VIEWS: dict[Any, type[APIView]] = {
    chat_completions: ChatCompletionsDocumentation,
    nlx_chat_completions: NlxChatCompletionsDocumentation,
    turn_events: TurnEventsDocumentation,
    healthz: HealthDocumentation,
    readyz: HealthDocumentation,
}


def documented_urlpatterns() -> list[URLPattern | URLResolver]:
    """The project's urlpatterns with the plain views swapped for their documentation views."""
    from config import urls  # config.urls imports this module

    return [_documented(pattern) for pattern in urls.urlpatterns]


def _documented(pattern: URLPattern | URLResolver) -> URLPattern | URLResolver:
    if isinstance(pattern, URLResolver):
        return URLResolver(
            pattern.pattern,
            [_documented(child) for child in pattern.url_patterns],
            pattern.default_kwargs,
            pattern.app_name,
            pattern.namespace,
        )
    view = DOCUMENTATION_VIEWS.get(pattern.callback)
    if view is None:
        return pattern
    return URLPattern(pattern.pattern, view.as_view(), pattern.default_args, pattern.name)


@functools.cache
def route_names() -> dict[str, str]:
    """OpenAPI path ("/v1/sessions/{session_id}") -> URL name, for every route."""
    enumerator = EndpointEnumerator(patterns=[])
    names: dict[str, str] = {}

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            regex = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, regex)
            elif pattern.name:
                names.setdefault(enumerator.get_path_from_regex(regex), pattern.name)

    walk(documented_urlpatterns(), "")
    return names


@functools.cache
def canonical_paths() -> dict[str, str]:
    """URL name -> its first path: the others (/api/v1/chat/completions…) are aliases."""
    canonical: dict[str, str] = {}
    for path, name in route_names().items():
        canonical.setdefault(name, path)
    return canonical


class ParleySchemaGenerator(SchemaGenerator):
    """Generates from the documented urlpatterns unless told another urlconf."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("urlconf") is None and kwargs.get("patterns") is None:
            kwargs["patterns"] = documented_urlpatterns()
        super().__init__(*args, **kwargs)


# --- reading the table -----------------------------------------------------------------------------


class ParleyAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, told by operations.py what the hand-built
    JSON answers look like. `@extend_schema` on a view still wins over the table."""

    def _operation(self) -> Operation | None:
        name = route_names().get(self.path)
        return OPERATIONS.get((name, self.method)) if name else None

    def get_operation_id(self) -> str:
        operation = self._operation()
        if operation is None:
            return super().get_operation_id()
        name = route_names()[self.path]
        if canonical_paths()[name] == self.path:
            return operation.operation_id
        return f"{operation.operation_id}_{re.sub('[^A-Za-z0-9]+', '_', self.path).strip('_')}"

    def get_summary(self) -> str | None:
        operation = self._operation()
        return operation.summary if operation else super().get_summary()

    def get_description(self) -> str:
        operation = self._operation()
        if operation is not None and operation.description:
            return operation.description
        return super().get_description()

    def get_tags(self) -> list[str]:
        operation = self._operation()
        return [operation.tag] if operation else super().get_tags()

    def get_request_serializer(self) -> Any:
        operation = self._operation()
        return operation.request if operation else super().get_request_serializer()

    def get_response_serializers(self) -> Any:
        operation = self._operation()
        return operation.responses if operation else super().get_response_serializers()

    def get_override_parameters(self) -> list:
        operation = self._operation()
        return list(operation.parameters) if operation else super().get_override_parameters()

    def _get_request_for_media_type(self, serializer: Any, direction: str = "request") -> Any:
        operation = self._operation()
        if self.method != "PATCH" or operation is None or operation.partial_update:
            return super()._get_request_for_media_type(serializer, direction)
        # A PATCH whose body is validated whole (a member's role): not drf-spectacular's partial copy.
        self.method = "PUT"
        try:
            return super()._get_request_for_media_type(serializer, direction)
        finally:
            self.method = "PATCH"

    def _get_request_body(self, direction: str = "request") -> Any:
        operation = self._operation()
        if operation is not None and operation.request is None:
            return None  # a POST without a body (cancel a turn, trade a session for a JWT)
        return super()._get_request_body(direction)


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
    target_class = "sessions.api.serializers.ContentField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        part = {
            "type": "object",
            "description": "A content part: `text` (any role), `image_url`, `input_audio` and `file` "
            "(user), `refusal` (assistant).",
            "properties": {
                "type": {"type": "string", "enum": ["text", "image_url", "input_audio", "file", "refusal"]},
                "text": {"type": "string"},
                "image_url": {
                    "type": "object",
                    "properties": {"url": {"type": "string"}, "detail": {"type": "string"}},
                    "required": ["url"],
                },
                "input_audio": {"type": "object", "additionalProperties": {}},
                "file": {"type": "object", "additionalProperties": {}},
                "refusal": {"type": "string"},
            },
            "required": ["type"],
        }
        return {
            "oneOf": [{"type": "string"}, {"type": "array", "items": part, "minItems": 1}],
            "description": "A string, or an array of content parts. May be null on an assistant "
            "message that has `tool_calls`.",
        }


class StopFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "sessions.api.serializers.StopField"

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
        from agents.api.serializers import DefaultParamsSerializer

        return auto_schema.resolve_serializer(DefaultParamsSerializer, direction).ref


class ConstantSchema(OpenApiSerializerFieldExtension):
    # Marked here, made an enum by the hook below: drf-spectacular's enum hook would otherwise
    # turn each `object` constant into a component of its own.
    target_class = "config.openapi.responses.Constant"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return {"type": "string", "x-parley-constant": self.target.value}


class ErrorObjectFieldSchema(OpenApiSerializerFieldExtension):
    target_class = "config.openapi.responses.ErrorObjectField"

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        return {"allOf": [{"$ref": "#/components/schemas/ErrorObject"}]}
