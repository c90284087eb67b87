"""What the views' `@extend_schema` share and drf-spectacular cannot infer: the Server-Sent
Events answer, an error answer (the envelope is one component, hooks.py), path parameters (the
`id` converter has no type to read), request examples, and the OpenAPI links between operations."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
EVENT_STREAM = "text/event-stream"
# OpenAPI before 3.2 describes a `text/event-stream` answer event by event (3.2 has `itemSchema`).
EVENT_STREAM_SCHEMA = {
    "type": "object",
    "description": "One Server-Sent Event. A stream is `data: {ChatCompletionChunk}` events, each with "
    "an `id:`, then `data: [DONE]`; a failure ends it with `data: {ErrorResponse}` instead. Comment "
    "lines (`: keep-alive`) keep idle connections open.",
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The event's number in the turn: send the last one received as "
            "`Last-Event-ID` to resume after it.",
        },
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "description": "A `ChatCompletionChunk` or an `ErrorResponse` as JSON, or `[DONE]`.",
        },
    },
    "required": ["id", "data"],
    "example": {
        "id": "2",
        "data": '{"id":"chatcmpl-…","object":"chat.completion.chunk","created":1735689600,"model":"echo",'
        '"session_id":"sess_…","turn_id":"turn_…","choices":[{"index":0,"delta":{"content":"Hello"},'
        '"logprobs":null,"finish_reason":"stop"}]}',
    },
}


def error(description: str) -> OpenApiResponse:
    """An error answer beyond those every operation has (hooks.py): its envelope and why."""
    return OpenApiResponse(ERROR_REF, description=description)


def path_parameter(name: str, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.PATH, description=description, **kwargs)


def query_parameter(name: str, kind: Any, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **kwargs)


def header_parameter(name: str, description: str, **kwargs: Any) -> OpenApiParameter:
    kwargs.setdefault("type", OpenApiTypes.STR)
    kwargs.setdefault("required", False)
    return OpenApiParameter(name, location=OpenApiParameter.HEADER, description=description, **kwargs)


def request_example(name: str, value: dict[str, Any]) -> OpenApiExample:
    """A request body to show (and for a test tool to send first)."""
    return OpenApiExample(name, value=value, request_only=True)


SESSION_ID = path_parameter("session_id", "The session's id.")
TURN_ID = path_parameter("turn_id", "The turn's id (`turn_…`; the `X-Turn-Id` header of the chat answer).")
SLUG = path_parameter("slug", "The agent's slug.")
KEY_ID = path_parameter("key_id", "The key's id.")
USER_ID = path_parameter("user_id", "The user's id.")


# --- links: what a client (or a test tool) can call next with an answer ------------------------------


def _links(operation_ids: tuple[str, ...], parameter: str, expression: str) -> dict[str, dict[str, Any]]:
    """OpenAPI links to the operations on what an answer names, where the parameter comes from in
    the answer (runtime expressions: `$response.body#/id`, `$response.header.X-Turn-Id`)."""
    return {
        operation_id: {"operationId": operation_id, "parameters": {parameter: expression}}
        for operation_id in operation_ids
    }


_SESSION_OPERATIONS = ("retrieveSession", "updateSession", "exportSession", "forkSession", "deleteSession")
_SESSION_LINKS = _links(_SESSION_OPERATIONS, "session_id", "$response.body#/id")
_TURN_OPERATIONS = ("retrieveTurn", "streamTurnEvents", "cancelTurn")
_TURN_LINKS = _links(_TURN_OPERATIONS, "turn_id", "$response.body#/id")
_AGENT_LINKS = _links(("retrieveAgent", "updateAgent", "deleteAgent"), "slug", "$response.body#/id")
# A chat answer names its turn in a header (a stream has no JSON body) and its session in another.
_CHAT_LINKS = {
    **_links(_TURN_OPERATIONS, "turn_id", "$response.header.X-Turn-Id"),
    **_links(_SESSION_OPERATIONS, "session_id", "$response.header.X-Session-Id"),
}

# operationId -> status -> links (drf-spectacular has no way to declare them on a view).
LINKS: dict[str, dict[int, dict[str, dict[str, Any]]]] = {
    "createChatCompletion": {200: _CHAT_LINKS},
    "createNlxChatCompletion": {200: _CHAT_LINKS},
    "createAgent": {201: _AGENT_LINKS},
    "updateAgent": {200: _AGENT_LINKS},
    "createSession": {201: _SESSION_LINKS},
    "forkSession": {201: _SESSION_LINKS},
    "retrieveTurn": {200: _TURN_LINKS},
    "cancelTurn": {200: _TURN_LINKS},
    "createApiKey": {201: _links(("retrieveApiKey", "revokeApiKey"), "key_id", "$response.body#/id")},
    "addMember": {
        201: _links(("retrieveMember", "changeMemberRole", "removeMember"), "user_id", "$response.body#/id")
    },
}
