"""HTTP for the Sessions API: list, create, read, change, delete, export and fork sessions; read
and cancel turns. Parse, call one service, shape the answer."""

from __future__ import annotations

from django.http import JsonResponse
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.selectors import access_agent_named_in_body
from sessions.api.pagination import SessionCursorPagination
from sessions.api.responses import session_export, session_payload, turn_payload
from sessions.api.session_serializers import (
    SessionCreateSerializer,
    SessionForkSerializer,
    SessionListFiltersSerializer,
    SessionUpdateSerializer,
)
from sessions.selectors import (
    SessionFilters,
    access_session,
    access_turn,
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
        filters = SessionListFiltersSerializer(request.query_params).validated_query()
        sessions = session_list(organization=request.user.organization, filters=SessionFilters(**filters))
        paginator = SessionCursorPagination()
        page = paginator.paginate_queryset(sessions, request, view=self)
        return paginator.get_paginated_response([session_payload(session) for session in page])

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
