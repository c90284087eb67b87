"""Writes to sessions and their transcripts."""

from __future__ import annotations

import logging
import unicodedata
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone
from rest_framework.exceptions import ErrorDetail

from accounts.models import AutomationSettings
from config.errors import Conflict, InvalidRequest, validation_error
from sessions.ids import PUBLIC_ID_PREFIXES, SESSION_PREFIX, is_reserved_session_id, new_public_id
from sessions.models import Message, Session, Turn
from sessions.selectors import session_not_found

if TYPE_CHECKING:
    from collections.abc import Iterable

    from accounts.models import Organization
    from agents.models import Agent

logger = logging.getLogger(__name__)


def session_resolve(*, organization: Organization, session_id: str | None, agent: Agent) -> Session | None:
    """The session a chat request continues or starts.

    An unknown client-chosen `session_id` creates the session when the organization's
    automation setting `auto_create_sessions` is on, else it is a 404 (exactly like another
    tenant's session). An unknown id with one of Parley's own prefixes (sess_…) is always a
    404: Parley issued it, so the session was deleted, expired or is another tenant's, and
    starting a new one under that id would hide it. Without a `session_id` a new session is
    made, or None (a stateless call) when auto-creation is off."""
    auto_create = organization.automation.auto_create_sessions
    if session_id is None:
        if not auto_create:
            return None
        return Session.objects.create(
            organization=organization, external_id=new_public_id(SESSION_PREFIX), agent=agent
        )
    existing = Session.objects.filter(organization=organization, external_id=session_id).first()
    if existing is not None:
        return existing
    if not auto_create or is_reserved_session_id(session_id):
        raise session_not_found(session_id)
    try:
        with transaction.atomic():
            return Session.objects.create(organization=organization, external_id=session_id, agent=agent)
    except IntegrityError:  # created by a concurrent request a moment ago
        return Session.objects.get(organization=organization, external_id=session_id)


def session_exists(session_id: str) -> Conflict:
    return Conflict(f"A session with id '{session_id}' already exists.", param="id", code="session_exists")


def _reserved_id() -> InvalidRequest:
    prefixes = " or ".join(f"'{prefix}_'" for prefix in PUBLIC_ID_PREFIXES)
    message = f"Ids starting with {prefixes} are issued by Parley only; choose another id or leave it out."
    return validation_error({"id": [ErrorDetail(message, code="reserved")]})


def session_create(
    *,
    organization: Organization,
    session_id: str | None = None,
    title: str = "",
    metadata: dict[str, str] | None = None,
    agent: Agent | None = None,
) -> Session:
    """An empty session, with the client's id or a generated one; an id in use is a conflict,
    and an id with one of Parley's own prefixes (which only Parley hands out) is refused."""
    if session_id is not None and is_reserved_session_id(session_id):
        raise _reserved_id()
    try:
        with transaction.atomic():
            return Session.objects.create(
                organization=organization,
                external_id=session_id or new_public_id(SESSION_PREFIX),
                title=title,
                metadata=metadata or {},
                agent=agent,
            )
    except IntegrityError:
        raise session_exists(session_id or "") from None


class SessionChanges(TypedDict, total=False):
    """What PATCH /v1/sessions/{id} may change; a key left out is left as it is."""

    title: str
    metadata: dict[str, str]


def session_update(*, session: Session, changes: SessionChanges) -> Session:
    for name, value in changes.items():
        setattr(session, name, value)
    session.save(update_fields=[*changes, "updated"])
    return session


def session_delete(*, session: Session) -> None:
    session.delete()


def session_fork(*, session: Session, messages: int, new_session_id: str | None = None) -> Session:
    """A new session holding copies of the first `messages` messages of `session` (1 to its
    message count), with its agent, end user and metadata. The two go their own ways after."""
    with transaction.atomic():
        # The lock waits for a turn storing messages right now, so the copy is a consistent prefix.
        source = Session.objects.select_for_update().get(pk=session.pk)
        if not 1 <= messages <= source.message_count:
            raise InvalidRequest(
                f"messages must be from 1 to the session's message count ({source.message_count}).",
                param="messages",
                code="invalid_value",
            )
        title = f"Fork of {source.title or source.external_id}"[: Session._meta.get_field("title").max_length]
        fork = session_create(
            organization=source.organization,
            session_id=new_session_id,
            title=title,
            metadata=dict(source.metadata),
            agent=source.agent,
        )
        copied = Message.objects.filter(session=source, seq__lte=messages).order_by("seq")
        Message.objects.bulk_create(
            Message(
                session=fork,
                seq=position,
                role=message.role,
                content=message.content,
                name=message.name,
                tool_calls=message.tool_calls,
                tool_call_id=message.tool_call_id,
            )
            for position, message in enumerate(copied, start=1)
        )
        fork.message_count = messages
        fork.end_user = source.end_user
        fork.save(update_fields=["message_count", "end_user", "updated"])
    return fork


def session_record_turn(*, session: Session, agent: Agent, end_user: str | None) -> None:
    """Count a new turn of the session and note the request: activity time, its end user (a
    later request naming another user replaces it) and the agent of a session made without one.

    Call inside a transaction holding the session's row lock."""
    changes: dict[str, Any] = {"turn_count": F("turn_count") + 1, "updated": timezone.now()}
    if end_user and end_user != session.end_user:
        changes["end_user"] = session.end_user = end_user
    if session.agent_id is None:
        changes["agent"] = session.agent = agent
    Session.objects.filter(pk=session.pk).update(**changes)


def transcript_reset(*, session: Session) -> None:
    """Start the session's transcript over: its messages are deleted (its turns are kept).

    Call inside a transaction holding the session's row lock."""
    Message.objects.filter(session=session).delete()
    Session.objects.filter(pk=session.pk).update(message_count=0, updated=timezone.now())
    session.message_count = 0


_TITLE_LENGTH = 60
# Sentence punctuation and dashes end no title; quotes, #, %, & and the like may.
_TITLE_KEPT_PUNCTUATION = "\"'#%&*@/\\"


def session_title_from(text: str) -> str:
    """A title from a user message: its first ~60 characters on one line, cut at a word where
    possible, without trailing punctuation."""
    line = " ".join(text.split())
    if len(line) > _TITLE_LENGTH:
        space = line.rfind(" ", 0, _TITLE_LENGTH + 1)
        line = line[:space] if space >= _TITLE_LENGTH // 2 else line[:_TITLE_LENGTH]
    while line and (line[-1].isspace() or _is_sentence_punctuation(line[-1])):
        line = line[:-1]
    return line


def _is_sentence_punctuation(character: str) -> bool:
    return unicodedata.category(character) in ("Po", "Pd") and character not in _TITLE_KEPT_PUNCTUATION


def session_auto_title(*, session: Session, transcript: Iterable[Message]) -> None:
    """Name an untitled session from its first user message that has text (auto_title)."""
    for message in transcript:
        if message.role != "user":
            continue
        title = session_title_from(_text_of(message.content))
        if title:
            if Session.objects.filter(pk=session.pk, title="").update(title=title):
                session.title = title
            return


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")
    return ""


IDLE_SWEEP_BATCH = 500


def sessions_delete_idle(*, batch_size: int = IDLE_SWEEP_BATCH) -> int:
    """Delete the sessions that have been idle longer than their organization's
    `session_idle_ttl`, a batch at a time; a session with a queued or running turn is not idle.
    Returns how many were deleted. Idempotent: a second run right after deletes nothing."""
    deleted = 0
    now = timezone.now()
    unfinished = Turn.objects.filter(
        session=OuterRef("pk"), status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]
    )
    ttls = AutomationSettings.objects.filter(session_idle_ttl__isnull=False).values_list(
        "organization_id", "session_idle_ttl"
    )
    for organization_id, ttl in ttls:
        idle = Session.objects.filter(
            organization_id=organization_id, updated__lt=now - timedelta(seconds=ttl)
        ).exclude(Exists(unfinished))
        while True:
            batch = list(idle.values_list("pk", flat=True)[:batch_size])
            if not batch:
                break
            with transaction.atomic():
                # The conditions again, under the row locks: a session that came back to life
                # since is kept, and one that a request holds right now is left for next time.
                locked = list(
                    idle.filter(pk__in=batch).select_for_update(skip_locked=True).values_list("pk", flat=True)
                )
                _, per_model = Session.objects.filter(pk__in=locked).delete()
            deleted_now = per_model.get(Session._meta.label, 0)
            deleted += deleted_now
            if len(batch) < batch_size or not deleted_now:
                break
    if deleted:
        logger.info("Deleted %d idle sessions", deleted)
    return deleted


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
    Session.objects.filter(pk=session.pk).update(
        message_count=F("message_count") + len(rows), updated=timezone.now()
    )
    session.message_count += len(rows)
    return rows
