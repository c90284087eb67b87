"""HTTP for chat transport: POST /v1/chat/completions (and its aliases), the NLX-style route and
GET /v1/turns/{id}/events. Parse, call one service, answer with a completion or a stream."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.authentication import bearer_principal
from accounts.permissions import require_permission
from accounts.principal import Principal
from config.db import db_call
from config.errors import (
    ApiError,
    GatewayTimeout,
    InvalidRequest,
    MethodNotAllowed,
    body_too_large,
    error_response,
)
from config.inputs import ascii_int
from config.offload import off_loop, off_process
from sessions.api.chat_serializers import ChatRequest, chat_request_from_body
from sessions.api.shapes import chat_completion
from sessions.api.sse import sse_stream
from sessions.errors import turn_error
from sessions.events import wait_for_turn
from sessions.models import Session, Turn
from sessions.selectors import access_turn
from sessions.submission import turn_submit


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions (and its aliases). Async, so that waiting for or streaming a
    turn holds no thread; the turn itself runs on the executor."""
    _require_post(request)
    principal = await bearer_principal(request)
    require_permission(request, principal)
    chat = await _chat_request(request)
    return await _answer_chat(request, principal, chat, stream_by_default=False)


# A channel ends in an ISO 639-1 language code, with an optional region: web-en-US, sms-es-MX,
# voice-de. (Three-letter codes are not accepted: "en-US-web" would pass as language "web".)
NLX_CHANNEL = re.compile(r"^[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*?-[a-z]{2}(?:-[A-Z]{2}|-[0-9]{3})?$")


@csrf_exempt
async def nlx_chat_completions(request: HttpRequest, deployment: str, channel: str) -> HttpResponse:
    """POST /{deployment}/{channel}/chat/completions, NLX-style: the deployment names the agent,
    `model: "nlx:{conversationId}"` the session (plain "nlx" starts one), streaming by default."""
    _require_post(request)
    principal = await bearer_principal(request)
    require_permission(request, principal)
    if not NLX_CHANNEL.match(channel):
        raise InvalidRequest(
            f"The channel '{channel}' must end in a language code, as in 'web-en-US'.", param="channel"
        )
    chat = await _chat_request(request, nlx_deployment=deployment)
    return await _answer_chat(request, principal, chat, stream_by_default=True)


def _require_post(request: HttpRequest) -> None:
    if request.method != "POST":
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed; use POST.", headers={"Allow": "POST"}
        )


async def _chat_request(request: HttpRequest, *, nlx_deployment: str | None = None) -> ChatRequest:
    """The request's body, read, parsed and validated off the event loop; a large body in a
    parsing process, where it holds none of the web process's interpreter lock."""
    declared = request.META.get("CONTENT_LENGTH", "")
    if not (declared.isdigit() and int(declared) >= settings.PARLEY_PARSE_PROCESS_MIN_BYTES):
        return await off_loop(_chat_request_from, request, nlx_deployment)  # one trip to a thread
    raw = await off_loop(_body, request)
    return await off_process(chat_request_from_body, raw, nlx_deployment=nlx_deployment)


def _chat_request_from(request: HttpRequest, nlx_deployment: str | None) -> ChatRequest:
    return chat_request_from_body(_body(request), nlx_deployment=nlx_deployment)


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
        response, turn = await _completion_response(turn)
    response["X-Turn-Id"] = turn.id
    if turn.session_id:
        if Turn.session.is_cached(turn):  # loaded with the turn: no query
            response["X-Session-Id"] = turn.session.external_id
        else:
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


async def _completion_response(turn: Turn) -> tuple[HttpResponse, Turn]:
    """The answer once the turn has finished (or the error), and the turn as it was read then."""
    finished = await wait_for_turn(
        turn.id,
        is_finished=lambda: db_call(Turn.objects.filter(pk=turn.id, status__in=Turn.FINISHED).exists),
        timeout=settings.PARLEY_TURN_WAIT_SECONDS,
    )
    # Not the request's messages (megabytes, perhaps): the answer needs the turn's outcome.
    answered = Turn.objects.select_related("session").defer("input_messages", "session__metadata")
    turn = await db_call(answered.get, pk=turn.pk)
    if not finished:
        return error_response(_still_running(turn)), turn
    if turn.status != Turn.Status.COMPLETED:
        return error_response(turn_error(turn)), turn
    return JsonResponse(chat_completion(turn)), turn


def _session_external_id(turn: Turn) -> str:
    return Session.objects.filter(pk=turn.session_id).values_list("external_id", flat=True).get()


def _body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise body_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) from None


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


async def turn_events(request: HttpRequest, turn_id: str) -> HttpResponse:
    """GET /v1/turns/{id}/events: the turn's stream, replayed after `Last-Event-ID` (or from the
    start), then followed live. `?include_usage=true` adds the usage chunk,
    `?include_tool_steps=true` the server-side tool steps."""
    if request.method != "GET":
        raise MethodNotAllowed(f"Method {request.method} is not allowed; use GET.", headers={"Allow": "GET"})
    principal = await bearer_principal(request)
    require_permission(request, principal)
    turn = await db_call(access_turn, principal, turn_id)
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
