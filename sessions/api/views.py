"""HTTP for chat completions and sessions: parse, call one service, shape the answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.authentication import Principal, authenticate_bearer
from accounts.permissions import require_permission
from agents.selectors import agent_get
from config.db import db_call
from config.errors import (
    ApiError,
    GatewayTimeout,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    body_too_large,
    error_response,
)
from config.inputs import ascii_int, json_body_parse, text_problem
from config.offload import off_loop
from sessions.api.responses import chat_completion, session_export, session_payload, turn_payload
from sessions.api.serializers import (
    ChatRequest,
    SessionCreateSerializer,
    SessionForkSerializer,
    SessionUpdateSerializer,
    parse_chat_request,
)
from sessions.api.sse import sse_stream
from sessions.errors import turn_error
from sessions.events import wait_for_turn
from sessions.models import Session, Turn
from sessions.selectors import (
    SessionFilters,
    session_get,
    session_list,
    session_transcript,
    session_turns,
    turn_get,
)
from sessions.services import (
    session_create,
    session_delete,
    session_fork,
    session_not_found,
    session_update,
)
from sessions.submission import turn_cancel, turn_submit


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions (and its aliases). Async, so that waiting for or streaming a
    turn holds no thread; the turn itself runs on the executor."""
    _require_post(request)
    principal = await db_call(authenticate_bearer, request)
    require_permission(request, principal)
    chat = await off_loop(_chat_request, request)
    return await _answer_chat(request, principal, chat, stream_by_default=False)


# A channel ends in an ISO 639-1 language code, with an optional region: web-en-US, sms-es-MX,
# voice-de. (Three-letter codes are not accepted: "en-US-web" would pass as language "web".)
NLX_CHANNEL = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*?-[a-z]{2}(?:-[A-Z]{2}|-[0-9]{3})?$")


@csrf_exempt
async def nlx_chat_completions(request: HttpRequest, deployment: str, channel: str) -> HttpResponse:
    """POST /{deployment}/{channel}/chat/completions, NLX-style: the deployment names the agent,
    `model: "nlx:{conversationId}"` the session (plain "nlx" starts one), streaming by default."""
    _require_post(request)
    principal = await db_call(authenticate_bearer, request)
    require_permission(request, principal)
    if not NLX_CHANNEL.match(channel):
        raise InvalidRequest(
            f"The channel '{channel}' must end in a language code, as in 'web-en-US'.", param="channel"
        )
    chat = await off_loop(_chat_request, request, nlx_deployment=deployment)
    return await _answer_chat(request, principal, chat, stream_by_default=True)


def _require_post(request: HttpRequest) -> None:
    if request.method != "POST":
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed; use POST.", headers={"Allow": "POST"}
        )


def _chat_request(request: HttpRequest, *, nlx_deployment: str | None = None) -> ChatRequest:
    """The request's body, read, parsed and validated: work that grows with the body, so the views
    run it off the event loop (config/offload.py). On the NLX route the deployment names the
    agent and `model: "nlx:{conversationId}"` the session."""
    payload = _json_body(request)
    if nlx_deployment is not None and isinstance(payload, dict):
        model = payload.get("model", "nlx")
        if model != "nlx" and not (isinstance(model, str) and model.startswith("nlx:")):
            raise InvalidRequest("On this route 'model' is 'nlx' or 'nlx:{conversationId}'.", param="model")
        conversation = model.removeprefix("nlx").removeprefix(":")
        payload = {**payload, "model": f"{nlx_deployment}:{conversation}" if conversation else nlx_deployment}
    return parse_chat_request(payload)


async def _answer_chat(
    request: HttpRequest, principal: Principal, chat: ChatRequest, *, stream_by_default: bool
) -> HttpResponse:
    turn = await db_call(
        turn_submit,
        organization=principal.organization,
        api_key=principal.api_key,
        user=principal.user,
        request=chat.turn,
        idempotency_key=_idempotency_key(request),
        client_retry=request.headers.get("X-Stainless-Retry-Count", "0") not in ("", "0"),
    )
    stream = chat.stream if chat.stream is not None else stream_by_default
    if stream or _prefers_event_stream(request):
        response = _event_stream_response(
            turn.id, after_seq=0, include_usage=chat.include_usage, include_tool_steps=chat.include_tool_steps
        )
    else:
        response = await _completion_response(turn)
    response["X-Turn-Id"] = turn.id
    if turn.session_id:
        response["X-Session-Id"] = await db_call(_session_external_id, turn)
    return response


def _prefers_event_stream(request: HttpRequest) -> bool:
    # Some platforms' clients ask for a stream with the Accept header alone.
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return False
    return request.get_preferred_type(["application/json", "text/event-stream"]) == "text/event-stream"


def _event_stream_response(
    turn_id: str, *, after_seq: int, include_usage: bool, include_tool_steps: bool = False
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        sse_stream(
            turn_id, after_seq=after_seq, include_usage=include_usage, include_tool_steps=include_tool_steps
        ),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
    return response


async def _completion_response(turn: Turn) -> HttpResponse:
    finished = await wait_for_turn(
        turn.id,
        is_finished=lambda: db_call(Turn.objects.filter(pk=turn.id, status__in=Turn.FINISHED).exists),
        timeout=settings.PARLEY_TURN_WAIT_SECONDS,
    )
    turn = await db_call(Turn.objects.select_related("session").get, pk=turn.pk)
    if not finished:
        return error_response(_still_running(turn))
    if turn.status != Turn.Status.COMPLETED:
        return error_response(turn_error(turn))
    return JsonResponse(chat_completion(turn))


def _session_external_id(turn: Turn) -> str:
    return Session.objects.filter(pk=turn.session_id).values_list("external_id", flat=True).get()


def _json_body(request: HttpRequest) -> Any:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise body_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) from None
    return json_body_parse(raw)


def _idempotency_key(request: HttpRequest) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest(
            "The Idempotency-Key header must be 1-255 characters.", code="invalid_idempotency_key"
        )
    return key


def _still_running(turn: Turn) -> ApiError:
    where = f" and stored in session '{turn.session.external_id}'" if turn.session_id else ""
    return GatewayTimeout(
        f"The agent did not answer within {settings.PARLEY_TURN_WAIT_SECONDS:g} s. Turn {turn.id} "
        f"goes on; its answer will be kept{where}.",
        code="turn_timeout",
    )


class SessionListView(APIView):
    """GET /v1/sessions: newest first, `limit` (1-100) and `after` (a session id) as cursor,
    filtered by `agent` (slug), `user` (the end user), `metadata[key]=value` and
    `created_after`/`created_before` (unix seconds or ISO 8601, exclusive).
    POST /v1/sessions: an empty session, with an optional id, title, metadata and agent."""

    def get(self, request: Request) -> JsonResponse:
        organization = request.user.organization
        limit = _limit(request.query_params.get("limit", "20"))
        filters = _session_filters(request.query_params)
        sessions = session_list(organization=organization, filters=filters).order_by("-created", "-id")
        after = _query_text(request.query_params, "after")
        if after:
            cursor = session_get(organization=organization, session_id=after)
            if cursor is None:
                raise InvalidRequest(f"No session found with id '{after}'.", param="after")
            sessions = sessions.filter(created__lte=cursor.created).exclude(
                created=cursor.created, id__gte=cursor.id
            )
        page = list(sessions[: limit + 1])
        data = [session_payload(session) for session in page[:limit]]
        return JsonResponse(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": len(page) > limit,
            }
        )

    def post(self, request: Request) -> JsonResponse:
        organization = request.user.organization
        serializer = SessionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        agent = None
        if "agent" in data:
            agent = agent_get(organization=organization, slug=data["agent"])
            if agent is None:  # another organization's agent looks missing too
                raise InvalidRequest(
                    f"No agent found with slug '{data['agent']}'.", param="agent", code="agent_not_found"
                )
        session = session_create(
            organization=organization,
            session_id=data.get("id"),
            title=data.get("title", ""),
            metadata=data.get("metadata"),
            agent=agent,
        )
        return JsonResponse(session_payload(session, []), status=201)


def _limit(raw: str) -> int:
    limit = ascii_int(raw, max_digits=3)
    if limit is None or not 1 <= limit <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit")
    return limit


_METADATA_FILTER = re.compile(r"^metadata\[(.*)\]$")
_METADATA_FILTERS_MAX = 16
_UNIX_SECONDS = re.compile(r"^[0-9]{1,11}(\.[0-9]+)?$")


def _session_filters(query: Any) -> SessionFilters:
    metadata: dict[str, str] = {}
    for name in query:
        match = _METADATA_FILTER.fullmatch(name)
        if match is None:
            continue
        key = match.group(1)
        problem = text_problem(key)
        if problem:  # named without its key, which cannot be printed
            raise InvalidRequest(f"A metadata filter's key is invalid. {problem[0]}", param="metadata")
        if not 1 <= len(key) <= 64:
            raise InvalidRequest(f"{name}: a metadata key is 1 to 64 characters.", param=name)
        metadata[key] = _query_text(query, name)
    if len(metadata) > _METADATA_FILTERS_MAX:
        raise InvalidRequest(f"At most {_METADATA_FILTERS_MAX} metadata filters.", param="metadata")
    return SessionFilters(
        agent=_non_empty(query, "agent"),
        end_user=_non_empty(query, "user"),
        metadata=metadata,
        created_after=_moment(query, "created_after"),
        created_before=_moment(query, "created_before"),
    )


def _non_empty(query: Any, param: str) -> str | None:
    value = _query_text(query, param)
    if value is not None and not value:
        raise InvalidRequest(f"{param} must not be empty.", param=param)
    return value


def _query_text(query: Any, param: str) -> str | None:
    """A query parameter that is compared with stored text: one the database can take."""
    value = query.get(param)
    problem = text_problem(value) if value is not None else None
    if problem:
        raise InvalidRequest(f"Invalid value for '{param}': {problem[0]}", param=param)
    return value


def _moment(query: Any, param: str) -> datetime | None:
    """Unix seconds or an ISO 8601 date or date and time (UTC unless it says otherwise)."""
    raw = query.get(param)
    if raw is None:
        return None
    try:
        if _UNIX_SECONDS.match(raw):
            return datetime.fromtimestamp(float(raw), tz=UTC)
        moment = parse_datetime(raw)
        if moment is None and (day := parse_date(raw)) is not None:
            moment = datetime.combine(day, time.min)
    except (ValueError, OverflowError, OSError):
        moment = None
    if moment is None:
        raise InvalidRequest(
            f"{param} must be unix seconds or an ISO 8601 date and time, like 2025-01-31T12:00:00Z.",
            param=param,
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _session_or_404(request: Request, session_id: str) -> Session:
    session = session_get(organization=request.user.organization, session_id=session_id)
    if session is None:
        raise session_not_found(session_id)
    return session


class SessionDetailView(APIView):
    """GET /v1/sessions/{id} with its messages; PATCH its title and metadata (metadata is
    replaced as a whole); DELETE /v1/sessions/{id}."""

    def get(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        return JsonResponse(session_payload(session, session_transcript(session=session)))

    def patch(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        serializer = SessionUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_update(session=session, changes=dict(serializer.validated_data))
        return JsonResponse(session_payload(session))

    def delete(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        session_delete(session=session)
        return JsonResponse({"id": session_id, "object": "session.deleted", "deleted": True})


class SessionExportView(APIView):
    """GET /v1/sessions/{id}/export: the session, all its messages and its turns, as a JSON
    file to download."""

    def get(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        export = session_export(
            session,
            session_transcript(session=session),
            session_turns(session=session),
            exported_at=timezone.now(),
        )
        response = JsonResponse(export, json_dumps_params={"indent": 2, "ensure_ascii": False})
        response["Content-Disposition"] = f'attachment; filename="session-{session.external_id}.json"'
        return response


class SessionForkView(APIView):
    """POST /v1/sessions/{id}/fork {messages: N, id?}: a new session holding copies of the
    first N messages, with the same agent and metadata."""

    def post(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        serializer = SessionForkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fork = session_fork(
            session=session,
            messages=serializer.validated_data["messages"],
            new_session_id=serializer.validated_data.get("id"),
        )
        return JsonResponse(session_payload(fork, session_transcript(session=fork)), status=201)


def _turn_or_404(organization, turn_id: str) -> Turn:
    turn = turn_get(organization=organization, turn_id=turn_id)
    if turn is None:
        raise NotFound(f"No turn found with id '{turn_id}'.", param="turn_id", code="turn_not_found")
    return turn


class TurnDetailView(APIView):
    """GET /v1/turns/{id}: where a turn stands (after a 504, for instance)."""

    def get(self, request: Request, turn_id: str) -> JsonResponse:
        return JsonResponse(turn_payload(_turn_or_404(request.user.organization, turn_id)))


class TurnCancelView(APIView):
    """POST /v1/turns/{id}/cancel."""

    def post(self, request: Request, turn_id: str) -> JsonResponse:
        turn = turn_cancel(turn=_turn_or_404(request.user.organization, turn_id))
        return JsonResponse(turn_payload(turn))


async def turn_events(request: HttpRequest, turn_id: str) -> HttpResponse:
    """GET /v1/turns/{id}/events: the turn's stream, replayed after `Last-Event-ID` (or from the
    start), then followed live. `?include_usage=true` adds the usage chunk,
    `?include_tool_steps=true` the server-side tool steps."""
    if request.method != "GET":
        raise MethodNotAllowed(f"Method {request.method} is not allowed; use GET.", headers={"Allow": "GET"})
    principal = await db_call(authenticate_bearer, request)
    require_permission(request, principal)
    turn = await db_call(_turn_or_404, principal.organization, turn_id)
    last_event_id = ascii_int(request.headers.get("Last-Event-ID", "0").strip() or "0")
    if last_event_id is None:
        raise InvalidRequest("Last-Event-ID must be the id of an event of this turn.", param="Last-Event-ID")
    include_usage = request.GET.get("include_usage", "false").lower() == "true"
    include_tool_steps = request.GET.get("include_tool_steps", "false").lower() == "true"
    response = _event_stream_response(
        turn.id,
        after_seq=last_event_id,
        include_usage=include_usage,
        include_tool_steps=include_tool_steps,
    )
    response["X-Turn-Id"] = turn.id
    return response
