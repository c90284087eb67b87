"""The Sessions and Turns APIs' `@extend_schema`, applied from here until sessions/api/views.py is
split (then each moves onto its view)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view

from config.openapi.parts import SESSION_ID, TURN_ID, error, request_example
from config.openapi.parts import query_parameter as _query
from sessions.api.serializers import SessionCreateSerializer, SessionForkSerializer, SessionUpdateSerializer
from sessions.api.shapes import (
    SessionDeletedSerializer,
    SessionExportSerializer,
    SessionListSerializer,
    SessionSerializer,
    TurnSerializer,
)
from sessions.api.views import (
    SessionDetailView,
    SessionExportView,
    SessionForkView,
    SessionListView,
    TurnCancelView,
    TurnDetailView,
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

extend_schema_view(
    get=extend_schema(
        operation_id="listSessions",
        summary="List sessions",
        tags=["Sessions"],
        parameters=list(_SESSION_LIST_PARAMETERS),
        responses=SessionListSerializer,
    ),
    post=extend_schema(
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
    ),
)(SessionListView)
extend_schema_view(
    get=extend_schema(
        operation_id="retrieveSession",
        summary="Retrieve a session with its messages",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        responses=SessionSerializer,
    ),
    patch=extend_schema(
        operation_id="updateSession",
        summary="Update a session's title or metadata",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        request=SessionUpdateSerializer,
        responses=SessionSerializer,
        examples=[request_example("A new title", {"title": "Billing question"})],
    ),
    delete=extend_schema(
        operation_id="deleteSession",
        summary="Delete a session",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        responses={200: SessionDeletedSerializer},
    ),
)(SessionDetailView)
extend_schema_view(
    get=extend_schema(
        operation_id="exportSession",
        summary="Export a session",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        responses=SessionExportSerializer,
    )
)(SessionExportView)
extend_schema_view(
    post=extend_schema(
        operation_id="forkSession",
        summary="Fork a session",
        tags=["Sessions"],
        parameters=[SESSION_ID],
        request=SessionForkSerializer,
        responses={201: SessionSerializer, 409: error("A session with the new id already exists.")},
        examples=[request_example("The first two messages", {"messages": 2})],
    )
)(SessionForkView)
extend_schema_view(
    get=extend_schema(
        operation_id="retrieveTurn",
        summary="Retrieve a turn",
        tags=["Turns"],
        parameters=[TURN_ID],
        responses=TurnSerializer,
    )
)(TurnDetailView)
extend_schema_view(
    post=extend_schema(
        operation_id="cancelTurn",
        summary="Cancel a turn",
        tags=["Turns"],
        description="Stop a queued or running turn; cancelling a cancelled turn changes nothing.",
        parameters=[TURN_ID],
        request=None,
        responses={200: TurnSerializer, 409: error("The turn has already finished.")},
    )
)(TurnCancelView)
