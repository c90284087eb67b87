"""HTTP for chat completions and sessions: parse, call one service, shape the answer."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.authentication import authenticate_bearer
from config.errors import (
    ApiError,
    GatewayTimeout,
    InvalidJson,
    InvalidRequest,
    MethodNotAllowed,
    body_too_large,
    error_response,
)
from sessions.api.responses import chat_completion, session_payload
from sessions.api.serializers import parse_chat_request
from sessions.events import wait_for_turn
from sessions.models import Session, Turn
from sessions.selectors import session_get, session_list, session_transcript
from sessions.services import session_delete, session_not_found
from sessions.turns import turn_error, turn_submit


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions (and its aliases). Async, so that waiting for a turn holds no
    thread; the turn itself runs on the executor."""
    if request.method != "POST":
        raise MethodNotAllowed(
            f"Method {request.method} is not allowed; use POST.", headers={"Allow": "POST"}
        )
    principal = await sync_to_async(authenticate_bearer)(request)
    chat = parse_chat_request(_json_body(request))
    turn = await sync_to_async(turn_submit)(
        organization=principal.organization,
        api_key=principal.api_key,
        request=chat,
        idempotency_key=_idempotency_key(request),
        client_retry=request.headers.get("X-Stainless-Retry-Count", "0") not in ("", "0"),
    )
    finished = await wait_for_turn(
        turn.id,
        is_finished=lambda: Turn.objects.filter(pk=turn.id, status__in=Turn.FINISHED).aexists(),
        timeout=settings.PARLEY_TURN_WAIT_SECONDS,
    )
    turn = await Turn.objects.select_related("session").aget(pk=turn.pk)
    if not finished:
        response = error_response(_still_running(turn))
    elif turn.status == Turn.Status.FAILED:
        response = error_response(turn_error(turn))
    else:
        response = JsonResponse(chat_completion(turn))
    response["X-Turn-Id"] = turn.id
    if turn.session_id:
        response["X-Session-Id"] = turn.session.external_id
    return response


def _json_body(request: HttpRequest) -> Any:
    try:
        raw = request.body
    except RequestDataTooBig:
        raise body_too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) from None
    if not raw.strip():
        raise InvalidJson("The request body is empty; expected a JSON object.")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"The request body is not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


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
    """GET /v1/sessions: newest first, `limit` (1-100) and `after` (a session id) as cursor."""

    def get(self, request: Request) -> JsonResponse:
        organization = request.user.organization
        limit = _limit(request.query_params.get("limit", "20"))
        sessions = session_list(organization=organization).order_by("-created", "-id")
        after = request.query_params.get("after")
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


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidRequest("limit must be an integer from 1 to 100.", param="limit")
    return int(raw)


class SessionDetailView(APIView):
    """GET /v1/sessions/{id} with its messages; DELETE /v1/sessions/{id}."""

    def _session(self, request: Request, session_id: str) -> Session:
        session = session_get(organization=request.user.organization, session_id=session_id)
        if session is None:
            raise session_not_found(session_id)
        return session

    def get(self, request: Request, session_id: str) -> JsonResponse:
        session = self._session(request, session_id)
        return JsonResponse(session_payload(session, session_transcript(session=session)))

    def delete(self, request: Request, session_id: str) -> JsonResponse:
        session = self._session(request, session_id)
        session_delete(session=session)
        return JsonResponse({"id": session_id, "object": "session.deleted", "deleted": True})
