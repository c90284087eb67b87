"""Reads. Every selector takes the organization (or the principal acting in it): another
tenant's object looks missing. The `access_*` helpers are what a view calls for an object named
in its path: the object, or the 404 that a missing one and another tenant's alike answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Q, QuerySet, Subquery, Value
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.errors import NotFound
from sessions.history import INSTRUCTION_ROLES, recent_window, window_bound
from sessions.models import Message, Session, Turn

if TYPE_CHECKING:
    from collections.abc import Iterator

    from accounts.models import Organization
    from accounts.principal import Principal


def session_get(*, organization: Organization, session_id: str) -> Session | None:
    return Session.objects.filter(organization=organization, external_id=session_id).first()


def session_not_found(session_id: str) -> NotFound:
    return NotFound(f"No session found with id '{session_id}'.", param="session_id", code="session_not_found")


def access_session(principal: Principal, session_id: str) -> Session:
    """The session of the principal's organization with this id, or session_not_found (404)."""
    session = session_get(organization=principal.organization, session_id=session_id)
    if session is None:
        raise session_not_found(session_id)
    return session


@dataclass(frozen=True)
class SessionFilters:
    """What GET /v1/sessions narrows the list to; None (or empty) filters nothing."""

    agent: str | None = None  # the agent's slug
    end_user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # every key must hold its value
    created_after: datetime | None = None
    created_before: datetime | None = None


def session_list(*, organization: Organization, filters: SessionFilters | None = None) -> QuerySet[Session]:
    sessions = Session.objects.filter(organization=organization).select_related("agent")
    if filters is None:
        return sessions
    if filters.agent is not None:
        sessions = sessions.filter(agent__slug=filters.agent)
    if filters.end_user is not None:
        sessions = sessions.filter(end_user=filters.end_user)
    for index, (key, value) in enumerate(filters.metadata.items()):
        # A key transform by expression: a key holding "__" is a key, not a nested lookup. The
        # value is compared as a JSON string, on SQLite and PostgreSQL alike.
        alias = f"metadata_filter_{index}"
        sessions = sessions.alias(**{alias: KeyTransform(key, "metadata")}).filter(**{alias: value})
    if filters.created_after is not None:
        sessions = sessions.filter(created__gt=filters.created_after)
    if filters.created_before is not None:
        sessions = sessions.filter(created__lt=filters.created_before)
    return sessions


def session_transcript(*, session: Session) -> list[Message]:
    return list(Message.objects.filter(session=session).order_by("seq"))


def transcript_ends(*, session: Session, count: int) -> tuple[list[Message], list[Message]]:
    """The first and the last `count` messages of a transcript longer than twice that, in one
    query: seq numbers them from 1 to message_count without gaps. Call holding the session's
    row lock, or message_count may be stale."""
    last = session.message_count
    rows = list(
        Message.objects.filter(Q(seq__lte=count) | Q(seq__gt=last - count), session=session).order_by("seq")
    )
    return rows[:count], rows[count:]


def transcript_user_messages(*, session: Session) -> Iterator[Message]:
    """The transcript's user messages in order, read a few at a time (the first one usually does)."""
    return Message.objects.filter(session=session, role="user").order_by("seq").iterator(chunk_size=20)


def session_history(
    *, session: Session, max_messages: int | None, max_tokens: int | None
) -> list[dict[str, Any]]:
    """The session's history window (sessions/history.py) as the agent sees it, reading only
    what the window can hold: the leading system/developer messages, then the last messages
    that `window_bound` allows, newest first with a LIMIT. Call holding the session's row lock."""
    bound = window_bound(max_messages=max_messages, max_tokens=max_tokens)
    messages = Message.objects.filter(session=session)
    if bound is None:
        return [message.as_openai() for message in messages.order_by("seq")]
    # One query: the leading instructions (every message before the first other one) and the
    # last `bound` messages, which may overlap them.
    first_other = messages.exclude(role__in=INSTRUCTION_ROLES).order_by("seq").values("seq")[:1]
    last = session.message_count
    rows = list(
        messages.filter(
            Q(seq__lt=Coalesce(Subquery(first_other), Value(last + 1))) | Q(seq__gt=last - bound)
        ).order_by("seq")
    )
    lead = 0
    while lead < len(rows) and rows[lead].seq == lead + 1 and rows[lead].role in INSTRUCTION_ROLES:
        lead += 1
    return recent_window(
        [message.as_openai() for message in rows[:lead]],
        [message.as_openai() for message in rows[lead:]],
        max_messages=max_messages,
        max_tokens=max_tokens,
    )


def session_turns(*, session: Session) -> list[Turn]:
    return list(Turn.objects.filter(session=session).order_by("position"))


def turn_get(*, organization: Organization, turn_id: str) -> Turn | None:
    return Turn.objects.filter(organization=organization, pk=turn_id).select_related("session").first()


def access_turn(principal: Principal, turn_id: str) -> Turn:
    """The turn of the principal's organization with this id, or a 404 turn_not_found."""
    turn = turn_get(organization=principal.organization, turn_id=turn_id)
    if turn is None:
        raise NotFound(f"No turn found with id '{turn_id}'.", param="turn_id", code="turn_not_found")
    return turn


def idempotency_key_cutoff() -> datetime:
    """An Idempotency-Key names the turn it made for PARLEY_IDEMPOTENCY_KEY_SECONDS: the turns
    queued before this moment no longer answer to theirs."""
    return timezone.now() - timedelta(seconds=settings.PARLEY_IDEMPOTENCY_KEY_SECONDS)


def turn_by_idempotency_key(*, organization: Organization, key: str) -> Turn | None:
    return (
        Turn.objects.filter(
            organization=organization, idempotency_key=key, queued_at__gte=idempotency_key_cutoff()
        )
        .select_related("session")
        .first()
    )
