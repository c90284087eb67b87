"""The documentation-only views that stand for the plain async views in the schema: chat
completions (OpenAI's and NLX's routes) and a turn's event stream hold no thread while a turn
runs, and the health checks are plain Django views, so drf-spectacular cannot read them. Each
view here is swapped in for the generator only (generator.documented_urlpatterns), never for traffic;
its `@extend_schema` says what the plain view takes and answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.health import HealthSerializer, ReadinessSerializer, healthz, readyz
from config.openapi.parts import (
    EVENT_STREAM,
    EVENT_STREAM_SCHEMA,
    TURN_ID,
    error,
    header_parameter,
    path_parameter,
    query_parameter,
    request_example,
)
from config.openapi.schema import ParleyAutoSchema
from sessions.api.chat import NLX_CHANNEL, chat_completions, nlx_chat_completions, turn_events
from sessions.api.chat_serializers import ChatCompletionRequestSerializer
from sessions.api.shapes import ChatCompletionChunkSerializer, ChatCompletionSerializer

CHAT_DESCRIPTION = """OpenAI's Chat Completions, with sessions: send a `session_id` and only the new
messages, and Parley supplies the history (the agent's system prompt, the stored transcript, then
the new messages). Without one, a new session is created and named in the answer's `session_id` and
the `X-Session-Id` header (with the organization's `auto_create_sessions` off, the call is stateless
and an unknown `session_id` is 404). An unknown id with Parley's own prefixes (`sess_…`, `turn_…`)
is always 404: such ids are never created by a request. A client that resends the whole transcript,
as OpenAI clients do, is recognised: the stored prefix is not stored twice.

**Naming the session**: `session_id`, or its synonyms `conversation_id` (Dify), `thread_id`
(Assistants) and `conversation` (Responses API: a string or `{"id": …}`), or the model form
`"model": "agent:session"`. Naming two different sessions is 400. `session_reset: true` starts the
session's transcript over.

**Model**: an agent's slug (GET /v1/models); without `model`, the organization's default agent.

**Streaming**: with `stream: true`, or an `Accept` header that prefers `text/event-stream`, the
answer is Server-Sent Events: `data: {chat.completion.chunk}` events (the first delta carries the
role; tool calls stream as indexed `tool_calls` deltas; the last chunk carries `finish_reason`;
with `stream_options.include_usage` a final chunk with empty `choices` carries `usage`), then
`data: [DONE]`. With `stream_options.include_tool_steps` (Parley), server-side tool steps appear
as chunks with an empty delta and a `tool_step` field. Every event has an `id:`; a dropped client
resumes with GET /v1/turns/{turn_id}/events and `Last-Event-ID`. A failure after the stream
started ends it with an error event carrying the error envelope, never a silent hang.

**Turns go on**: a turn runs to the end and is stored even if the client leaves; POST
/v1/turns/{turn_id}/cancel stops it. A non-streaming request that waits too long gets 504 with
code `turn_timeout` while the turn goes on.

**Retries**: `Idempotency-Key` makes a request safe to repeat; a resend of the same new messages to
the same session within a short window is recognised as a retry, so a message is never stored twice.

Unknown fields are ignored, as OpenAI does."""

NLX_DESCRIPTION = """The NLX-style route: the `deployment` path segment names the agent, `channel` ends
in a language code (`web-en-US`, `sms-es-MX`, `voice-de`), and `model` carries the session:
`"nlx:{conversationId}"` continues (or creates) that session, plain `"nlx"` (or no `model`) starts
a new one. The body is otherwise a chat completion request, and the answer **streams by default**
(send `"stream": false` for one JSON answer)."""

_CHAT_HEADERS = [
    header_parameter(
        "Idempotency-Key",
        "Makes the request safe to repeat for 24 h: the same request with the same key gets the first "
        "answer again instead of running it again (1-255 characters). Reusing a key for a different "
        "request is 400 `idempotency_key_reused`; while the key's turn is still being answered, 409 "
        "`idempotency_key_in_use` with `Retry-After`.",
        type={"type": "string", "minLength": 1, "maxLength": 255},
    ),
    header_parameter("X-Session-Id", "The session the turn was stored in.", response=[200]),
    header_parameter("X-Turn-Id", "The turn: follow it with GET /v1/turns/{turn_id}/events.", response=[200]),
]
_CHAT_RESPONSES = {
    (200, "application/json"): OpenApiResponse(
        ChatCompletionSerializer,
        description="The completion (`stream` false), or Server-Sent Events (`stream` true, or an "
        "`Accept` header preferring `text/event-stream`).",
    ),
    (200, EVENT_STREAM): OpenApiResponse(EVENT_STREAM_SCHEMA),
    404: error(
        "Unknown model (agent), an unknown `sess_…` session id, or an unknown `session_id` with "
        "`auto_create_sessions` off; another organization's session looks missing too."
    ),
    409: error(
        "The `Idempotency-Key`'s turn is still being answered (`idempotency_key_in_use`); `Retry-After` "
        "says when to try again."
    ),
    429: error(
        "Rate limited (`rate_limit_exceeded`) or the quota is used up (`insufficient_quota`); "
        "`Retry-After` says when to try again."
    ),
    502: error("The agent's upstream or webhook failed."),
    504: error("The agent did not answer in time (`turn_timeout`); the turn goes on and is stored."),
}
_HELLO = {"role": "user", "content": "Hello!"}


class _DocumentationOnly(APIView):
    """Stands for a plain Django view in the schema; never routed."""


class _StreamSchema(ParleyAutoSchema):
    """A chat answer's stream: its events' JSON (`ChatCompletionChunk`) is a component of its own,
    which the event's `data` string names (OpenAPI before 3.2 cannot reference it)."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        self.resolve_serializer(ChatCompletionChunkSerializer, "response")
        return operation


def _never_routed(schema: type[ParleyAutoSchema] | None = None) -> Callable[..., Response]:
    # A function of its own for each view: `@extend_schema` marks the function it decorates.
    def handler(self: APIView, request: Request, *args: Any, **kwargs: Any) -> Response:
        raise AssertionError(f"{type(self).__name__} documents an endpoint; it serves no requests.")

    if schema is not None:
        handler.schema = schema  # type: ignore[attr-defined]  (extend_schema builds on it)
    return handler


class ChatCompletionsDocumentation(_DocumentationOnly):
    post = extend_schema(
        operation_id="createChatCompletion",
        summary="Create a chat completion",
        description=CHAT_DESCRIPTION,
        tags=["Chat"],
        request=ChatCompletionRequestSerializer,
        responses=_CHAT_RESPONSES,
        parameters=_CHAT_HEADERS,
        examples=[
            request_example("A new session", {"model": "echo", "messages": [_HELLO]}),
            request_example(
                "Continue a session",
                {
                    "model": "echo",
                    "session_id": "support-42",
                    "messages": [{"role": "user", "content": "And then?"}],
                },
            ),
            request_example(
                "Stream",
                {
                    "model": "echo",
                    "messages": [_HELLO],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ),
        ],
    )(_never_routed(_StreamSchema))


class NlxChatCompletionsDocumentation(_DocumentationOnly):
    post = extend_schema(
        operation_id="createNlxChatCompletion",
        summary="Create a chat completion, NLX-style",
        description=NLX_DESCRIPTION,
        tags=["Chat"],
        request=ChatCompletionRequestSerializer,
        responses=_CHAT_RESPONSES,
        parameters=[
            path_parameter(
                "deployment", "The agent's slug.", examples=[OpenApiExample("echo", value="echo")]
            ),
            path_parameter(
                "channel",
                "A channel ending in a language code, like `web-en-US`.",
                pattern=NLX_CHANNEL.pattern,
                examples=[OpenApiExample("web", value="web-en-US")],
            ),
            *_CHAT_HEADERS,
        ],
        examples=[
            request_example("A new conversation", {"model": "nlx", "messages": [_HELLO]}),
            request_example(
                "Continue one as JSON", {"model": "nlx:c-42", "messages": [_HELLO], "stream": False}
            ),
        ],
    )(_never_routed())


class TurnEventsDocumentation(_DocumentationOnly):
    get = extend_schema(
        operation_id="streamTurnEvents",
        summary="Follow a turn's events",
        description="The turn's stream as Server-Sent Events: replayed after `Last-Event-ID` (or "
        "from the start), then followed live until `data: [DONE]` or an error event. A client whose "
        "stream dropped resumes here without gap or duplicate.",
        tags=["Turns"],
        parameters=[
            TURN_ID,
            header_parameter(
                "Last-Event-ID",
                "Replay the events after this one (the `id:` of the last event received).",
                type={"type": "string", "pattern": "^[0-9]*$"},
            ),
            query_parameter("include_usage", OpenApiTypes.BOOL, "Add the final chunk with `usage`."),
            query_parameter("include_tool_steps", OpenApiTypes.BOOL, "Add the server-side tool steps."),
        ],
        responses={
            (200, EVENT_STREAM): OpenApiResponse(EVENT_STREAM_SCHEMA, description="The turn's events.")
        },
    )(_never_routed())


class HealthDocumentation(_DocumentationOnly):
    authentication_classes = []
    get = extend_schema(
        operation_id="retrieveHealth",
        summary="Liveness",
        description="200 while the process serves requests.",
        tags=["Operability"],
        responses=HealthSerializer,
    )(_never_routed())


class ReadinessDocumentation(_DocumentationOnly):
    authentication_classes = []
    get = extend_schema(
        operation_id="retrieveReadiness",
        summary="Readiness",
        description="200 when the database (and, in production, Redis and the broker) answer; else 503.",
        tags=["Operability"],
        responses={200: ReadinessSerializer, 503: ReadinessSerializer},
    )(_never_routed())


DOCUMENTATION_VIEWS: dict[Any, type[APIView]] = {
    chat_completions: ChatCompletionsDocumentation,
    nlx_chat_completions: NlxChatCompletionsDocumentation,
    turn_events: TurnEventsDocumentation,
    healthz: HealthDocumentation,
    readyz: ReadinessDocumentation,
}
