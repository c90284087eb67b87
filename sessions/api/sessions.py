"""HTTP for the Sessions API: list, create, read, change, delete, export and fork sessions; read
and cancel turns. Parse, call one service, shape the answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from typing import Any

from django.http import JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.selectors import agent_get
from config.errors import InvalidRequest, NotFound
from config.inputs import ascii_int, text_problem
from config.openapi.parts import SESSION_ID, TURN_ID, error, request_example
from config.openapi.parts import query_parameter as _query
from sessions.api.session_serializers import (
    SessionCreateSerializer,
    SessionForkSerializer,
    SessionUpdateSerializer,
)
from sessions.api.shapes import (
    SessionDeletedSerializer,
    SessionExportSerializer,
    SessionListSerializer,
    SessionSerializer,
    TurnSerializer,
)
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
from sessions.submission import turn_cancel

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


class SessionListView(APIView):
    """GET /v1/sessions: newest first, `limit` (1-100) and `after` (a session id) as cursor,
    filtered by `agent` (slug), `user` (the end user), `metadata[key]=value` and
    `created_after`/`created_before` (unix seconds or ISO 8601, exclusive).
    POST /v1/sessions: an empty session, with an optional id, title, metadata and agent."""

    @extend_schema(
        operation_id="listSessions",
        summary="List sessions",
        tags=["Sessions"],
        parameters=list(_SESSION_LIST_PARAMETERS),
        responses=SessionListSerializer,
    )
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
        return JsonResponse(SessionListSerializer({"data": page[:limit], "has_more": len(page) > limit}).data)

    @extend_schema(
        operation_id="createSession",
        summary="Create a session",
        tags=["Sessions"],
        request=SessionCreateSerializer,
        responses={201: SessionSerializer, 409: error("A session with this id already exists.")},
        examples=[
            request_example(
                "A named session", {"id": "support-42", "title": "Support", "metadata": {"customer": "42"}}
            )
        ],
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
        return JsonResponse(SessionSerializer(session, context={"messages": []}).data, status=201)


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

    @extend_schema(
        operation_id="retrieveSession",
        summary="Retrieve a session with its messages",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        responses=SessionSerializer,
    )
    def get(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        transcript = session_transcript(session=session)
        return JsonResponse(SessionSerializer(session, context={"messages": transcript}).data)

    @extend_schema(
        operation_id="updateSession",
        summary="Update a session's title or metadata",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        request=SessionUpdateSerializer,
        responses=SessionSerializer,
        examples=[request_example("A new title", {"title": "Billing question"})],
    )
    def patch(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        serializer = SessionUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_update(session=session, changes=dict(serializer.validated_data))
        return JsonResponse(SessionSerializer(session).data)

    @extend_schema(
        operation_id="deleteSession",
        summary="Delete a session",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        responses={200: SessionDeletedSerializer},
    )
    def delete(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        session_delete(session=session)
        return JsonResponse(SessionDeletedSerializer({"id": session_id}).data)


class SessionExportView(APIView):
    """GET /v1/sessions/{id}/export: the session, all its messages and its turns, as a JSON
    file to download."""

    @extend_schema(
        operation_id="exportSession",
        summary="Export a session",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        responses=SessionExportSerializer,
    )
    def get(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        export = {
            "exported_at": timezone.now(),
            "session": session,
            "messages": session_transcript(session=session),
            "turns": session_turns(session=session),
        }
        response = JsonResponse(
            SessionExportSerializer(export).data, json_dumps_params={"indent": 2, "ensure_ascii": False}
        )
        response["Content-Disposition"] = f'attachment; filename="session-{session.external_id}.json"'
        return response


class SessionForkView(APIView):
    """POST /v1/sessions/{id}/fork {messages: N, id?}: a new session holding copies of the
    first N messages, with the same agent and metadata."""

    @extend_schema(
        operation_id="forkSession",
        summary="Fork a session",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        request=SessionForkSerializer,
        responses={201: SessionSerializer, 409: error("A session with the new id already exists.")},
        examples=[request_example("The first two messages", {"messages": 2})],
    )
    def post(self, request: Request, session_id: str) -> JsonResponse:
        session = _session_or_404(request, session_id)
        serializer = SessionForkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fork = session_fork(
            session=session,
            messages=serializer.validated_data["messages"],
            new_session_id=serializer.validated_data.get("id"),
        )
        transcript = session_transcript(session=fork)
        return JsonResponse(SessionSerializer(fork, context={"messages": transcript}).data, status=201)


def _turn_or_404(organization, turn_id: str) -> Turn:
    turn = turn_get(organization=organization, turn_id=turn_id)
    if turn is None:
        raise NotFound(f"No turn found with id '{turn_id}'.", param="turn_id", code="turn_not_found")
    return turn


class TurnDetailView(APIView):
    """GET /v1/turns/{id}: where a turn stands (after a 504, for instance)."""

    @extend_schema(
        operation_id="retrieveTurn",
        summary="Retrieve a turn",
        tags=["Turns"],
        parameters=[TURN_ID],
        responses=TurnSerializer,
    )
    def get(self, request: Request, turn_id: str) -> JsonResponse:
        return JsonResponse(TurnSerializer(_turn_or_404(request.user.organization, turn_id)).data)


class TurnCancelView(APIView):
    """POST /v1/turns/{id}/cancel."""

    @extend_schema(
        operation_id="cancelTurn",
        summary="Cancel a turn",
        tags=["Turns"],
        description="Stop a queued or running turn; cancelling a cancelled turn changes nothing.",
        parameters=[TURN_ID],
        request=None,
        responses={200: TurnSerializer, 409: error("The turn has already finished.")},
    )
    def post(self, request: Request, turn_id: str) -> JsonResponse:
        turn = turn_cancel(turn=_turn_or_404(request.user.organization, turn_id))
        return JsonResponse(TurnSerializer(turn).data)
