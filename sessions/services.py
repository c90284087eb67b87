"""Writes to sessions and their transcripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import F

from config.errors import NotFound
from sessions.ids import new_public_id
from sessions.models import Message, Session, Turn

if TYPE_CHECKING:
    from accounts.models import Organization
    from agents.models import Agent


def session_resolve(*, organization: Organization, session_id: str | None, agent: Agent) -> Session | None:
    """The session a chat request continues or starts.

    An unknown `session_id` creates the session when the organization's automation setting
    `auto_create_sessions` is on, else it is a 404 (exactly like another tenant's session).
    Without a `session_id` a new session is made, or None (a stateless call) when
    auto-creation is off."""
    auto_create = organization.automation.auto_create_sessions
    if session_id is None:
        if not auto_create:
            return None
        return Session.objects.create(
            organization=organization, external_id=new_public_id("sess"), agent=agent
        )
    existing = Session.objects.filter(organization=organization, external_id=session_id).first()
    if existing is not None:
        return existing
    if not auto_create:
        raise session_not_found(session_id)
    try:
        with transaction.atomic():
            return Session.objects.create(organization=organization, external_id=session_id, agent=agent)
    except IntegrityError:  # created by a concurrent request a moment ago
        return Session.objects.get(organization=organization, external_id=session_id)


def session_not_found(session_id: str) -> NotFound:
    return NotFound(f"No session found with id '{session_id}'.", param="session_id", code="session_not_found")


def session_delete(*, session: Session) -> None:
    session.delete()


def transcript_append(
    *, session: Session, messages: list[dict[str, Any]], turn: Turn | None
) -> list[Message]:
    """Store messages at the end of the transcript, numbered on from the last one.

    Call inside a transaction holding the session's row lock (select_for_update), so that
    sequence numbers stay unique and gap-free under concurrency."""
    if not messages:
        return []
    first = session.message_count + 1
    rows = Message.objects.bulk_create(
        Message(
            session=session,
            seq=first + offset,
            role=message["role"],
            content=message.get("content"),
            name=message.get("name") or "",
            tool_calls=message.get("tool_calls") or None,
            tool_call_id=message.get("tool_call_id") or "",
            turn=turn,
        )
        for offset, message in enumerate(messages)
    )
    Session.objects.filter(pk=session.pk).update(message_count=F("message_count") + len(rows))
    session.message_count += len(rows)
    return rows
