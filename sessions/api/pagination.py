"""The pages of GET /v1/sessions, as OpenAI pages its lists.

Not DRF's CursorPagination, whose contract is another one: its cursor is an opaque token of a
position and an offset (`?cursor=cD0yMDI1…`), its answer links `next` and `previous`, it pages by
one field (ties broken by an offset capped at 1000) and a bad page size quietly becomes the
default. Parley's documented contract is OpenAI's: the cursor is the last session's own id
(`after`, the previous page's `last_id`), an unknown one is a 400, a bad `limit` is a 400, and
ties on `created` are broken by the primary key. So this is DRF's pagination interface
(BasePagination) with that contract: a keyset on (created, id), newest first."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import JsonResponse
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.views import APIView

from config.errors import InvalidRequest
from sessions.api.session_serializers import LimitField, QuerySerializer, QueryTextField
from sessions.api.shapes import SessionListSerializer
from sessions.models import Session
from sessions.selectors import session_get

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class SessionPageSerializer(QuerySerializer):
    limit = LimitField(max_value=MAX_LIMIT)
    after = QueryTextField()


class SessionCursorPagination(BasePagination):
    """`limit` sessions (1-100, 20 by default), newest first, after the session that `after`
    names (any session of the organization, whatever the filters), answered as
    {"object": "list", "data", "first_id", "last_id", "has_more"}."""

    ordering = ("-created", "-id")

    def paginate_queryset(
        self, queryset: QuerySet[Session], request: Request, view: APIView | None = None
    ) -> list[Session]:
        query = SessionPageSerializer(request.query_params).validated_query()
        limit = query.get("limit", DEFAULT_LIMIT)
        sessions = queryset.order_by(*self.ordering)
        after = query.get("after")
        if after:
            cursor = session_get(organization=request.user.organization, session_id=after)
            if cursor is None:
                raise InvalidRequest(f"No session found with id '{after}'.", param="after")
            sessions = sessions.filter(created__lte=cursor.created).exclude(
                created=cursor.created, id__gte=cursor.id
            )
        page = list(sessions[: limit + 1])
        self.has_more = len(page) > limit
        return page[:limit]

    def get_paginated_response(self, data: list[Session]) -> JsonResponse:
        """The page's sessions in SessionListSerializer's envelope (first_id, last_id from them)."""
        return JsonResponse(SessionListSerializer({"data": data, "has_more": self.has_more}).data)
