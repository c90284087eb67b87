"""Reads. Every selector takes the organization (or the principal acting in it): another
tenant's object looks missing. The `access_*` helpers are what a view calls for an object named
in its path: the object, or the 404 that a missing one and another tenant's alike answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import QuerySet
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from config.errors import NotFound
from sessions.models import Message, Session, Turn

if TYPE_CHECKING:
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
