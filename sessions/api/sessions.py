"""HTTP for the Sessions API: list, create, read, change, delete, export and fork sessions; read
and cancel turns. Parse, call one service, shape the answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from typing import Any

from django.http import JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.selectors import access_agent_named_in_body
from config.errors import InvalidRequest
from config.inputs import ascii_int, text_problem
from sessions.api.responses import session_export, session_payload, turn_payload
from sessions.api.session_serializers import (
    SessionCreateSerializer,
    SessionForkSerializer,
    SessionUpdateSerializer,
)
from sessions.selectors import (
    SessionFilters,
    access_session,
    access_turn,
    session_get,
    session_list,
    session_transcript,
    session_turns,
)
from sessions.services import (
    session_create,
    session_delete,
    session_fork,
    session_update,
)
from sessions.turns import turn_cancel


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
            agent = access_agent_named_in_body(request.user, data["agent"], field="agent")
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


class SessionDetailView(APIView):
    """GET /v1/sessions/{id} with its messages; PATCH its title and metadata (metadata is
    replaced as a whole); DELETE /v1/sessions/{id}."""

    def get(self, request: Request, session_id: str) -> JsonResponse:
        session = access_session(request.user, session_id)
        return JsonResponse(session_payload(session, session_transcript(session=session)))

    def patch(self, request: Request, session_id: str) -> JsonResponse:
        session = access_session(request.user, session_id)
        serializer = SessionUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = session_update(session=session, changes=dict(serializer.validated_data))
        return JsonResponse(session_payload(session))

    def delete(self, request: Request, session_id: str) -> JsonResponse:
        session = access_session(request.user, session_id)
        session_delete(session=session)
        return JsonResponse({"id": session_id, "object": "session.deleted", "deleted": True})


class SessionExportView(APIView):
    """GET /v1/sessions/{id}/export: the session, all its messages and its turns, as a JSON
    file to download."""

    def get(self, request: Request, session_id: str) -> JsonResponse:
        session = access_session(request.user, session_id)
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
        session = access_session(request.user, session_id)
        serializer = SessionForkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fork = session_fork(
            session=session,
            messages=serializer.validated_data["messages"],
            new_session_id=serializer.validated_data.get("id"),
        )
        return JsonResponse(session_payload(fork, session_transcript(session=fork)), status=201)


class TurnDetailView(APIView):
    """GET /v1/turns/{id}: where a turn stands (after a 504, for instance)."""

    def get(self, request: Request, turn_id: str) -> JsonResponse:
        return JsonResponse(turn_payload(access_turn(request.user, turn_id)))


class TurnCancelView(APIView):
    """POST /v1/turns/{id}/cancel."""

    def post(self, request: Request, turn_id: str) -> JsonResponse:
        turn = turn_cancel(turn=access_turn(request.user, turn_id))
        return JsonResponse(turn_payload(turn))
