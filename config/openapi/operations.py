"""What every endpoint takes and answers: `OPERATIONS` maps an endpoint's URL name and method (as
the permission table does) to its documentation. Request serializers are the views' own; answers
are described in responses.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from accounts.api.auth import CredentialsInput, RefreshInput, TokenInput
from accounts.api.automation import AutomationSettingsInputSerializer
from accounts.api.keys import ApiKeyInputSerializer
from accounts.api.members import MemberAddSerializer, MemberChangeSerializer
from accounts.api.shapes import (
    ApiKeyListSerializer,
    ApiKeySerializer,
    AutomationSettingsSerializer,
    IssuedApiKeySerializer,
    MemberDeletedSerializer,
    MemberListSerializer,
    MemberSerializer,
    TokenPairSerializer,
)
from agents.api.serializers import AgentInputSerializer
from agents.api.shapes import (
    AgentDeletedSerializer,
    AgentListSerializer,
    AgentSerializer,
    ModelListSerializer,
    ModelSerializer,
)
from config.health import HealthSerializer, ReadinessSerializer
from sessions.api.serializers import (
    ChatCompletionRequestSerializer,
    SessionCreateSerializer,
    SessionForkSerializer,
    SessionUpdateSerializer,
)
from sessions.api.shapes import (
    ChatCompletionSerializer,
    SessionDeletedSerializer,
    SessionExportSerializer,
    SessionListSerializer,
    SessionSerializer,
    TurnSerializer,
    UsageSummarySerializer,
)
from sessions.api.views import NLX_CHANNEL

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


def _header(name: str, description: str, *, required: bool = False, **kwargs: Any) -> OpenApiParameter:
    kwargs.setdefault("type", OpenApiTypes.STR)
    return OpenApiParameter(
        name, location=OpenApiParameter.HEADER, required=required, description=description, **kwargs
    )


def _query(name: str, kind: Any, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, **kwargs)


def _path(name: str, description: str, **kwargs: Any) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.STR, OpenApiParameter.PATH, description=description, **kwargs)


_CHAT_HEADERS = (
    _header(
        "Idempotency-Key",
        "Makes the request safe to repeat for 24 h: the same request with the same key gets the first "
        "answer again instead of running it again (1-255 characters). Reusing a key for a different "
        "request is 400 `idempotency_key_reused`; while the key's turn is still being answered, 409 "
        "`idempotency_key_in_use` with `Retry-After`.",
        type={"type": "string", "minLength": 1, "maxLength": 255},
    ),
    _header("X-Session-Id", "The session the turn was stored in.", response=[200]),
    _header("X-Turn-Id", "The turn: follow it with GET /v1/turns/{turn_id}/events.", response=[200]),
)
_SESSION_ID = _path("session_id", "The session's id.")
_TURN_ID = _path("turn_id", "The turn's id (`turn_…`; the `X-Turn-Id` header of the chat answer).")
_SLUG = _path("slug", "The agent's slug.")


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the operation to call next and where its parameters come from in this
    answer (runtime expressions: `$response.body#/id`, `$response.header.X-Turn-Id`)."""

    operation_id: str
    parameters: dict[str, str]


def _links(operation_ids: tuple[str, ...], parameter: str, expression: str) -> dict[str, Link]:
    return {operation_id: Link(operation_id, {parameter: expression}) for operation_id in operation_ids}


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


def _request(name: str, value: dict[str, Any]) -> OpenApiExample:
    return OpenApiExample(name, value=value, request_only=True)


_HELLO = {"role": "user", "content": "Hello!"}
_CHAT_EXAMPLES = (
    _request("A new session", {"model": "echo", "messages": [_HELLO]}),
    _request(
        "Continue a session",
        {"model": "echo", "session_id": "support-42", "messages": [{"role": "user", "content": "And then?"}]},
    ),
    _request(
        "Stream",
        {"model": "echo", "messages": [_HELLO], "stream": True, "stream_options": {"include_usage": True}},
    ),
)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    tag: str
    responses: dict[Any, Any]
    request: Any = None
    parameters: tuple[OpenApiParameter, ...] = ()
    # Overrides the view's docstring.
    description: str | None = None
    # Errors beyond the ones hooks.py gives every operation, by status.
    errors: dict[int, str] = field(default_factory=dict)
    # False for a PATCH whose body is validated whole (its required fields stay required).
    partial_update: bool = True
    # OpenAPI links, by status: what a client (or a test tool) can call next with the answer.
    links: dict[int, dict[str, Link]] = field(default_factory=dict)
    # Request bodies to show (and for a test tool to send first).
    examples: tuple[OpenApiExample, ...] = ()


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

_CHAT_RESPONSES = {
    (200, "application/json"): OpenApiResponse(
        ChatCompletionSerializer,
        description="The completion (`stream` false), or Server-Sent Events (`stream` true, or an "
        "`Accept` header preferring `text/event-stream`).",
    ),
    (200, EVENT_STREAM): OpenApiResponse(EVENT_STREAM_SCHEMA),
}
_CHAT_ERRORS = {
    404: "Unknown model (agent), an unknown `sess_…` session id, or an unknown `session_id` with "
    "`auto_create_sessions` off; another organization's session looks missing too.",
    409: "The `Idempotency-Key`'s turn is still being answered (`idempotency_key_in_use`); `Retry-After` "
    "says when to try again.",
    429: "Rate limited (`rate_limit_exceeded`) or the quota is used up (`insufficient_quota`); "
    "`Retry-After` says when to try again.",
    502: "The agent's upstream or webhook failed.",
    504: "The agent did not answer in time (`turn_timeout`); the turn goes on and is stored.",
}


def _chat(
    operation_id: str,
    summary: str,
    description: str,
    parameters: tuple = (),
    examples: tuple[OpenApiExample, ...] = _CHAT_EXAMPLES,
) -> Operation:
    return Operation(
        operation_id=operation_id,
        summary=summary,
        tag="Chat",
        request=ChatCompletionRequestSerializer,
        responses=_CHAT_RESPONSES,
        parameters=(*parameters, *_CHAT_HEADERS),
        description=description,
        errors=_CHAT_ERRORS,
        links={200: _CHAT_LINKS},
        examples=examples,
    )


_SESSION_LIST_PARAMETERS = (
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": 100},
        "Page size, 1-100 (default 20).",
        default=20,
    ),
    _query("after", OpenApiTypes.STR, "A session id: the page after it (the previous page's `last_id`)."),
    _query("agent", OpenApiTypes.STR, "Only sessions of this agent (slug).", allow_blank=False),
    _query(
        "user",
        OpenApiTypes.STR,
        "Only sessions of this end user (the requests' `user` field).",
        allow_blank=False,
    ),
    OpenApiParameter(
        "metadata",
        {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "propertyNames": {"minLength": 1, "maxLength": 64},
            "maxProperties": 16,
        },
        OpenApiParameter.QUERY,
        style="deepObject",
        explode=True,
        description="`metadata[key]=value`: only sessions whose metadata has these values (up to 16).",
    ),
    _query("created_after", OpenApiTypes.STR, "Unix seconds or ISO 8601; exclusive.", allow_blank=False),
    _query("created_before", OpenApiTypes.STR, "Unix seconds or ISO 8601; exclusive.", allow_blank=False),
)

_USAGE_PARAMETERS = (
    _query("start", OpenApiTypes.DATE, "First day (UTC, included); default: 29 days before `end`."),
    _query("end", OpenApiTypes.DATE, "Last day (UTC, included); default: today. At most 366 days."),
    _query("group_by", OpenApiTypes.STR, "`day` (default), `agent` or `key`.", enum=["day", "agent", "key"]),
)

_TURN_EVENT_PARAMETERS = (
    _TURN_ID,
    _header(
        "Last-Event-ID",
        "Replay the events after this one (the `id:` of the last event received).",
        type={"type": "string", "pattern": "^[0-9]*$"},
    ),
    _query("include_usage", OpenApiTypes.BOOL, "Add the final chunk with `usage`."),
    _query("include_tool_steps", OpenApiTypes.BOOL, "Add the server-side tool steps."),
)

_NO_CONTENT = OpenApiResponse(description="Logged out: the refresh token is revoked.")

OPERATIONS: dict[tuple[str, str], Operation] = {
    # Chat.
    ("chat-completions", "POST"): _chat("createChatCompletion", "Create a chat completion", CHAT_DESCRIPTION),
    ("nlx-chat-completions", "POST"): _chat(
        "createNlxChatCompletion",
        "Create a chat completion, NLX-style",
        NLX_DESCRIPTION,
        (
            _path("deployment", "The agent's slug.", examples=[OpenApiExample("echo", value="echo")]),
            _path(
                "channel",
                "A channel ending in a language code, like `web-en-US`.",
                pattern=NLX_CHANNEL.pattern,
                examples=[OpenApiExample("web", value="web-en-US")],
            ),
        ),
        (
            _request("A new conversation", {"model": "nlx", "messages": [_HELLO]}),
            _request("Continue one as JSON", {"model": "nlx:c-42", "messages": [_HELLO], "stream": False}),
        ),
    ),
    ("models", "GET"): Operation("listModels", "List models", "Models", {200: ModelListSerializer}),
    ("model-detail", "GET"): Operation(
        "retrieveModel",
        "Retrieve a model",
        "Models",
        {200: ModelSerializer},
        parameters=(_SLUG,),
        description="An enabled agent of the organization, as OpenAI's model object.",
    ),
    # Agents.
    ("agents", "GET"): Operation("listAgents", "List agents", "Agents", {200: AgentListSerializer}),
    ("agents", "POST"): Operation(
        "createAgent",
        "Create an agent",
        "Agents",
        {201: AgentSerializer},
        request=AgentInputSerializer,
        errors={409: "An agent with this slug already exists."},
        links={201: _AGENT_LINKS},
        examples=(
            _request(
                "An echo agent",
                {"slug": "support", "name": "Support", "backend": "echo", "system_prompt": "Be brief."},
            ),
        ),
    ),
    ("agent-detail", "GET"): Operation(
        "retrieveAgent", "Retrieve an agent", "Agents", {200: AgentSerializer}, parameters=(_SLUG,)
    ),
    ("agent-detail", "PATCH"): Operation(
        "updateAgent",
        "Update an agent",
        "Agents",
        {200: AgentSerializer},
        request=AgentInputSerializer,
        parameters=(_SLUG,),
        errors={409: "Another agent has this slug, or a concurrent update changed the agent."},
        links={200: _AGENT_LINKS},
        examples=(_request("A new system prompt", {"system_prompt": "Be thorough."}),),
    ),
    ("agent-detail", "DELETE"): Operation(
        "deleteAgent", "Delete an agent", "Agents", {200: AgentDeletedSerializer}, parameters=(_SLUG,)
    ),
    # Sessions.
    ("sessions", "GET"): Operation(
        "listSessions",
        "List sessions",
        "Sessions",
        {200: SessionListSerializer},
        parameters=_SESSION_LIST_PARAMETERS,
    ),
    ("sessions", "POST"): Operation(
        "createSession",
        "Create a session",
        "Sessions",
        {201: SessionSerializer},
        request=SessionCreateSerializer,
        errors={409: "A session with this id already exists."},
        links={201: _SESSION_LINKS},
        examples=(
            _request(
                "A named session", {"id": "support-42", "title": "Support", "metadata": {"customer": "42"}}
            ),
        ),
    ),
    ("session-detail", "GET"): Operation(
        "retrieveSession",
        "Retrieve a session with its messages",
        "Sessions",
        {200: SessionSerializer},
        parameters=(_SESSION_ID,),
    ),
    ("session-detail", "PATCH"): Operation(
        "updateSession",
        "Update a session's title or metadata",
        "Sessions",
        {200: SessionSerializer},
        request=SessionUpdateSerializer,
        parameters=(_SESSION_ID,),
        examples=(_request("A new title", {"title": "Billing question"}),),
    ),
    ("session-detail", "DELETE"): Operation(
        "deleteSession",
        "Delete a session",
        "Sessions",
        {200: SessionDeletedSerializer},
        parameters=(_SESSION_ID,),
    ),
    ("session-export", "GET"): Operation(
        "exportSession",
        "Export a session",
        "Sessions",
        {200: SessionExportSerializer},
        parameters=(_SESSION_ID,),
    ),
    ("session-fork", "POST"): Operation(
        "forkSession",
        "Fork a session",
        "Sessions",
        {201: SessionSerializer},
        request=SessionForkSerializer,
        parameters=(_SESSION_ID,),
        errors={409: "A session with the new id already exists."},
        links={201: _SESSION_LINKS},
        examples=(_request("The first two messages", {"messages": 2}),),
    ),
    # Turns.
    ("turn-detail", "GET"): Operation(
        "retrieveTurn",
        "Retrieve a turn",
        "Turns",
        {200: TurnSerializer},
        parameters=(_TURN_ID,),
        links={200: _TURN_LINKS},
    ),
    ("turn-events", "GET"): Operation(
        "streamTurnEvents",
        "Follow a turn's events",
        "Turns",
        {(200, EVENT_STREAM): OpenApiResponse(EVENT_STREAM_SCHEMA, description="The turn's events.")},
        parameters=_TURN_EVENT_PARAMETERS,
        description="The turn's stream as Server-Sent Events: replayed after `Last-Event-ID` (or "
        "from the start), then followed live until `data: [DONE]` or an error event. A client whose "
        "stream dropped resumes here without gap or duplicate.",
    ),
    ("turn-cancel", "POST"): Operation(
        "cancelTurn",
        "Cancel a turn",
        "Turns",
        {200: TurnSerializer},
        parameters=(_TURN_ID,),
        description="Stop a queued or running turn; cancelling a cancelled turn changes nothing.",
        errors={409: "The turn has already finished."},
        links={200: _TURN_LINKS},
    ),
    # API keys.
    ("api-keys", "GET"): Operation(
        "listApiKeys",
        "List API keys",
        "API keys",
        {200: ApiKeyListSerializer},
        description="The organization's keys, revoked and expired ones too; never the keys themselves.",
    ),
    ("api-keys", "POST"): Operation(
        "createApiKey",
        "Create an API key",
        "API keys",
        {201: IssuedApiKeySerializer},
        request=ApiKeyInputSerializer,
        description="The answer holds the whole key (`key`), once. A key never holds more than its "
        "creator may do; the owner and organization are set by the server, never by the body.",
        links={201: _links(("retrieveApiKey", "revokeApiKey"), "key_id", "$response.body#/id")},
        examples=(
            _request("A chat key for 90 days", {"name": "ci", "scopes": ["chat"], "expires_in_days": 90}),
        ),
    ),
    ("api-key-detail", "GET"): Operation(
        "retrieveApiKey",
        "Retrieve an API key",
        "API keys",
        {200: ApiKeySerializer},
        parameters=(_path("key_id", "The key's id."),),
    ),
    ("api-key-detail", "DELETE"): Operation(
        "revokeApiKey",
        "Revoke an API key",
        "API keys",
        {200: ApiKeySerializer},
        parameters=(_path("key_id", "The key's id."),),
    ),
    # Members.
    ("members", "GET"): Operation(
        "listMembers", "List the organization's members", "Members", {200: MemberListSerializer}
    ),
    ("members", "POST"): Operation(
        "addMember",
        "Add a member",
        "Members",
        {201: MemberSerializer},
        request=MemberAddSerializer,
        errors={409: "The user is already a member."},
        links={
            201: _links(
                ("retrieveMember", "changeMemberRole", "removeMember"), "user_id", "$response.body#/id"
            )
        },
        examples=(_request("A member by username", {"username": "bob", "role": "member"}),),
    ),
    ("member-detail", "GET"): Operation(
        "retrieveMember",
        "Retrieve a member",
        "Members",
        {200: MemberSerializer},
        parameters=(_path("user_id", "The user's id."),),
    ),
    ("member-detail", "PATCH"): Operation(
        "changeMemberRole",
        "Change a member's role",
        "Members",
        {200: MemberSerializer},
        request=MemberChangeSerializer,
        parameters=(_path("user_id", "The user's id."),),
        errors={409: "The organization's last owner stays an owner."},
        partial_update=False,
        examples=(_request("Make an admin", {"role": "admin"}),),
    ),
    ("member-detail", "DELETE"): Operation(
        "removeMember",
        "Remove a member",
        "Members",
        {200: MemberDeletedSerializer},
        parameters=(_path("user_id", "The user's id."),),
        errors={409: "The organization's last owner stays."},
    ),
    # Settings and usage.
    ("automation-settings", "GET"): Operation(
        "retrieveAutomationSettings",
        "Retrieve the automation settings",
        "Settings",
        {200: AutomationSettingsSerializer},
    ),
    ("automation-settings", "PUT"): Operation(
        "updateAutomationSettings",
        "Change the automation settings",
        "Settings",
        {200: AutomationSettingsSerializer},
        request=AutomationSettingsInputSerializer,
        examples=(_request("Echo answers requests without a model", {"default_agent": "echo"}),),
    ),
    ("usage", "GET"): Operation(
        "retrieveUsage",
        "Usage by day, agent or key",
        "Usage",
        {200: UsageSummarySerializer},
        parameters=_USAGE_PARAMETERS,
    ),
    # Signing in.
    ("auth-token", "POST"): Operation(
        "createToken",
        "Sign in: a JWT pair",
        "Authentication",
        {200: TokenPairSerializer},
        request=CredentialsInput,
        description="A JWT access and refresh token for a username and password. The access token "
        "works as `Authorization: Bearer …` on every endpoint, acting in the organization the "
        "`X-Organization` header names, else the user's default one.",
        examples=(_request("A password", {"username": "alice", "password": "correct horse battery"}),),
    ),
    ("auth-token-refresh", "POST"): Operation(
        "refreshToken",
        "Refresh a JWT pair",
        "Authentication",
        {200: TokenPairSerializer},
        request=RefreshInput,
        description="A new pair for a refresh token; the refresh token is used up (rotation).",
    ),
    ("auth-token-verify", "POST"): Operation(
        "verifyToken",
        "Verify a JWT",
        "Authentication",
        {200: {"type": "object", "description": "An empty object: the token is valid."}},
        request=TokenInput,
    ),
    ("auth-logout", "POST"): Operation(
        "logout",
        "Sign out",
        "Authentication",
        {204: _NO_CONTENT},
        request=RefreshInput,
        description="Revoke the refresh token; needs the user's access token (not an API key).",
    ),
    ("auth-oidc-token", "POST"): Operation(
        "createTokenFromSession",
        "A JWT pair after a browser sign-in",
        "Authentication",
        {200: TokenPairSerializer},
        description="For a user signed in in the browser (password or identity provider, "
        "/accounts/login/): takes the session cookie and the CSRF token (`X-CSRFToken` header).",
    ),
    # Operability.
    ("openapi-schema", "GET"): Operation(
        "retrieveOpenApiSchema",
        "This OpenAPI description",
        "Operability",
        {200: OpenApiResponse(OpenApiTypes.OBJECT, description="The OpenAPI 3 document.")},
        description="Every endpoint of this server, generated from its routes. Public.",
    ),
    ("docs", "GET"): Operation(
        "retrieveDocs",
        "The API docs page",
        "Operability",
        {200: OpenApiResponse(OpenApiTypes.STR, description="An HTML page (Swagger UI).")},
        description="This description as a page to read and try requests from; its scripts and "
        "styles are served by this server, so it works offline. Public.",
    ),
    ("healthz", "GET"): Operation(
        "retrieveHealth",
        "Liveness",
        "Operability",
        {200: HealthSerializer},
        description="200 while the process serves requests.",
    ),
    ("readyz", "GET"): Operation(
        "retrieveReadiness",
        "Readiness",
        "Operability",
        {200: ReadinessSerializer, 503: ReadinessSerializer},
        description="200 when the database (and, in production, Redis and the broker) answer; else 503.",
    ),
}
