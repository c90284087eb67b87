"""HTTP for usage: GET /v1/usage."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from django.http import JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from config.errors import InvalidRequest
from config.openapi.parts import query_parameter
from sessions.api.shapes import UsageSummarySerializer
from sessions.usage import GROUPINGS, usage_summary

DEFAULT_DAYS = 30
MAX_DAYS = 366
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Usage has no records before the epoch; the day after `end` must still be a date.
_EARLIEST, _LATEST = date(1970, 1, 1), date.max - timedelta(days=1)


class UsageView(APIView):
    """GET /v1/usage: the caller's organization's turns and tokens from `start` to `end` (UTC
    dates, YYYY-MM-DD, both included; by default the last 30 days), grouped by `group_by`: `day`
    (the default), `agent` or `key`. Every turn counts as a request, whatever its status."""

    @extend_schema(
        operation_id="retrieveUsage",
        summary="Usage by day, agent or key",
        tags=["Usage"],
        parameters=[
            query_parameter(
                "start", OpenApiTypes.DATE, "First day (UTC, included); default: 29 days before `end`."
            ),
            query_parameter(
                "end", OpenApiTypes.DATE, "Last day (UTC, included); default: today. At most 366 days."
            ),
            query_parameter(
                "group_by",
                OpenApiTypes.STR,
                "`day` (default), `agent` or `key`.",
                enum=["day", "agent", "key"],
            ),
        ],
        responses=UsageSummarySerializer,
    )
    def get(self, request: Request) -> JsonResponse:
        query = request.query_params
        group_by = query.get("group_by", "day")
        if group_by not in GROUPINGS:
            raise InvalidRequest(
                f"group_by must be one of {', '.join(GROUPINGS)}; got '{group_by}'.", param="group_by"
            )
        today = datetime.now(UTC).date()
        end = _date(query, "end") or today
        start = _date(query, "start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise InvalidRequest("start must not be after end.", param="start")
        if (end - start).days >= MAX_DAYS:
            raise InvalidRequest(f"The range may span at most {MAX_DAYS} days.", param="start")
        summary = usage_summary(
            organization=request.user.organization, start=start, end=end, group_by=group_by
        )
        return JsonResponse(UsageSummarySerializer(summary).data)


def _date(query, param: str) -> date | None:
    raw = query.get(param)
    if raw is None:
        return None
    try:
        day = date.fromisoformat(raw) if _DATE.fullmatch(raw) else None
    except ValueError:
        day = None
    if day is None or not _EARLIEST <= day <= _LATEST:
        raise InvalidRequest(
            f"{param} must be a date as YYYY-MM-DD from {_EARLIEST} to {_LATEST}; got '{raw}'.", param=param
        )
    return day
