"""HTTP for the Sessions API: list, create, read, change, delete, export and fork sessions; read
and cancel turns. Parse, call one service, shape the answer."""

from __future__ import annotations

from django.http import JsonResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from agents.selectors import access_agent_named_in_body
from config.openapi.parts import SESSION_ID, TURN_ID, error, request_example
from config.openapi.parts import query_parameter as _query
from sessions.api.pagination import SessionCursorPagination
from sessions.api.session_serializers import (
    SessionCreateSerializer,
    SessionForkSerializer,
    SessionListFiltersSerializer,
    SessionUpdateSerializer,
)
from sessions.api.shapes import (
    SessionDeletedSerializer,
    SessionExportSerializer,
    SessionListSerializer,
    SessionSerializer,
    TurnSerializer,
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
        filters = SessionListFiltersSerializer(request.query_params).validated_query()
        sessions = session_list(organization=request.user.organization, filters=SessionFilters(**filters))
        paginator = SessionCursorPagination()
        page = paginator.paginate_queryset(sessions, request, view=self)
        return paginator.get_paginated_response(page)

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
            agent = access_agent_named_in_body(request.user, data["agent"], field="agent")
        session = session_create(
            organization=organization,
            session_id=data.get("id"),
            title=data.get("title", ""),
            metadata=data.get("metadata"),
            agent=agent,
        )
        return JsonResponse(SessionSerializer(session, context={"messages": []}).data, status=201)


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
        session = access_session(request.user, session_id)
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
        session = access_session(request.user, session_id)
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
        session = access_session(request.user, session_id)
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
        session = access_session(request.user, session_id)
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
        session = access_session(request.user, session_id)
        serializer = SessionForkSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fork = session_fork(
            session=session,
            messages=serializer.validated_data["messages"],
            new_session_id=serializer.validated_data.get("id"),
        )
        transcript = session_transcript(session=fork)
        return JsonResponse(SessionSerializer(fork, context={"messages": transcript}).data, status=201)


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
        return JsonResponse(TurnSerializer(access_turn(request.user, turn_id)).data)


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
        turn = turn_cancel(turn=access_turn(request.user, turn_id))
        return JsonResponse(TurnSerializer(turn).data)
