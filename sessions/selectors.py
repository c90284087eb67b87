"""Reads. Every selector takes the organization: another tenant's object looks missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from sessions.models import Message, Session, Turn

if TYPE_CHECKING:
    from accounts.models import Organization


def session_get(*, organization: Organization, session_id: str) -> Session | None:
    return Session.objects.filter(organization=organization, external_id=session_id).first()


def session_list(*, organization: Organization) -> QuerySet[Session]:
    return Session.objects.filter(organization=organization).select_related("agent")


def session_transcript(*, session: Session) -> list[Message]:
    return list(Message.objects.filter(session=session).order_by("seq"))


def turn_get(*, organization: Organization, turn_id: str) -> Turn | None:
    return Turn.objects.filter(organization=organization, pk=turn_id).select_related("session").first()


def turn_by_idempotency_key(*, organization: Organization, key: str) -> Turn | None:
    return (
        Turn.objects.filter(organization=organization, idempotency_key=key).select_related("session").first()
    )
