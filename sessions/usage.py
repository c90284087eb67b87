"""What turns used: a UsageRecord per finished turn, and its sums for GET /v1/usage."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import Coalesce, TruncDate

from sessions.limits import limits_turn_finished
from sessions.models import Turn, UsageRecord

if TYPE_CHECKING:
    from accounts.models import Organization

GROUPINGS = ("day", "agent", "key")


def turn_usage_record(
    *, turn: Turn, status: str, usage: dict[str, Any] | None, finished_at: datetime
) -> UsageRecord:
    """Record what a finished turn used.

    Call inside the transaction that finishes the turn, after the update that finished it
    succeeded (it is fenced, so there is one record per turn). Once that transaction commits, the
    turn's tokens count against the daily quotas and its concurrency slot is freed."""
    prompt = int((usage or {}).get("prompt_tokens") or 0)
    completion = int((usage or {}).get("completion_tokens") or 0)
    agent = turn.agent if turn.agent_id else None
    record = UsageRecord.objects.create(
        organization_id=turn.organization_id,
        api_key_id=turn.api_key_id,
        user_id=turn.user_id,
        agent=agent,
        agent_slug=(agent.slug if agent else turn.model)[:64],
        session_id=turn.session_id,
        turn=turn,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=max(0, round((finished_at - turn.queued_at) / timedelta(milliseconds=1))),
        status=status,
    )
    transaction.on_commit(partial(limits_turn_finished, turn=turn, tokens=prompt + completion))
    return record


def usage_summary(*, organization: Organization, start: date, end: date, group_by: str) -> dict[str, Any]:
    """The organization's usage from `start` to `end` (UTC days, both included), grouped by
    "day", "agent" (the model name the turns ran as) or "key" (API key; null for users)."""
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    records = UsageRecord.objects.filter(organization=organization, created__gte=since, created__lt=until)
    sums = {
        "requests": Count("id"),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
    }
    if group_by == "day":
        rows = records.annotate(day=TruncDate("created")).values("day").annotate(**sums).order_by("day")
        data = [{"day": row["day"].isoformat(), **_counts(row)} for row in rows]
    elif group_by == "agent":
        rows = records.values("agent_slug").annotate(**sums).order_by("agent_slug")
        data = [{"agent": row["agent_slug"], **_counts(row)} for row in rows]
    elif group_by == "key":
        rows = (
            records.values("api_key_id", "api_key__name")
            .annotate(**sums)
            .order_by(F("api_key_id").asc(nulls_last=True))
        )
        data = [
            {"api_key": row["api_key_id"], "api_key_name": row["api_key__name"], **_counts(row)}
            for row in rows
        ]
    else:
        raise ValueError(f"group_by must be one of {GROUPINGS}")
    return {
        "object": "list",
        "group_by": group_by,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "data": data,
        "totals": _counts(records.aggregate(**sums)),
    }


def _counts(row: dict[str, Any]) -> dict[str, int]:
    prompt, completion = row["prompt_tokens"], row["completion_tokens"]
    return {
        "requests": row["requests"],
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
