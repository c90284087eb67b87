"""What a client asks of turns: to run one (turn_submit: validate, resolve the session, store
the request, answer a repeated request by its earlier turn, hand the turn to the executor once
committed) and to stop one (turn_cancel). The request is held to its limits here, explicitly:
reserved before the turn exists, bound to it after, released when none was made."""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ErrorDetail

from accounts.automation import automation_get
from agents.selectors import agent_get_enabled
from config.errors import Conflict, InvalidRequest, NotFound, RateLimited, validation_error
from sessions.errors import TURN_CANCELLED, stored_error
from sessions.event_store import next_event_seq, store_events
from sessions.events import ERROR, publish_turn_events, turn_event
from sessions.executors import turn_enqueue, turn_start_next
from sessions.limits import limits_bind, limits_release, limits_reserve
from sessions.models import Session, Turn
from sessions.selectors import idempotency_key_cutoff, session_transcript, turn_by_idempotency_key
from sessions.services import session_record_turn, session_resolve
from sessions.transcript import answer_open_tool_calls
from sessions.usage import turn_usage_record

if TYPE_CHECKING:
    from accounts.models import ApiKey, Organization, User

logger = logging.getLogger(__name__)

Status = Turn.Status


@dataclass(frozen=True)
class TurnRequest:
    """A validated chat request, as the API layer hands it over."""

    agent_slug: str | None  # None: the organization's default agent
    session_id: str | None
    messages: list[dict[str, Any]]
    params: dict[str, Any]


def turn_submit(
    *,
    organization: Organization,
    api_key: ApiKey | None,
    request: TurnRequest,
    user: User | None = None,
    idempotency_key: str | None = None,
    client_retry: bool = False,
) -> Turn:
    """Record a turn and hand it to the executor; returns at once.

    A request that repeats an earlier one is answered by the earlier turn instead of storing
    its messages again. With an `Idempotency-Key`, the key alone decides (_turn_for_idempotency_key):
    the finished turn it made within PARLEY_IDEMPOTENCY_KEY_SECONDS answers again, a turn it made
    that is still unfinished is a 409 `idempotency_key_in_use`, a different request is a 400.
    Without one, the same request to the same session as its last turn, when the client says it
    is retrying (the OpenAI SDK does) or within PARLEY_RETRY_WINDOW_SECONDS, is answered by it.

    A request without `model` goes to the organization's default agent. `session_reset` in the
    params starts the transcript over, when the runner stores the turn's messages.

    The request is held to the key's and the organization's limits (sessions/limits): counted
    atomically before the turn exists, so that concurrent requests on any number of servers
    cannot overshoot, and a refused request stores nothing. A request that fails gives its count
    back; one answered by an earlier turn finds that turn already counted and gives it back too.
    A retry with an Idempotency-Key that already names a turn passes even at the limit, since it
    starts nothing."""
    try:
        reservation = limits_reserve(organization=organization, api_key=api_key)
    except RateLimited:
        if (
            not idempotency_key
            or turn_by_idempotency_key(organization=organization, key=idempotency_key) is None
        ):
            raise
        reservation = None
    try:
        turn = _turn_record(
            organization=organization,
            api_key=api_key,
            request=request,
            user=user,
            idempotency_key=idempotency_key,
            client_retry=client_retry,
        )
    except BaseException:
        limits_release(reservation)
        raise
    limits_bind(reservation, turn=turn)
    return turn


def _turn_record(
    *,
    organization: Organization,
    api_key: ApiKey | None,
    request: TurnRequest,
    user: User | None,
    idempotency_key: str | None,
    client_retry: bool,
) -> Turn:
    """The turn that answers the request: an earlier one it repeats, or a new one, stored and
    handed to the executor once committed."""
    if request.agent_slug is None:
        request = replace(request, agent_slug=_default_agent_slug(organization))
    fingerprint = _fingerprint(request)
    if idempotency_key:
        earlier = _turn_for_idempotency_key(organization, idempotency_key, fingerprint)
        if earlier is not None:
            return earlier
    agent = agent_get_enabled(organization=organization, slug=request.agent_slug)
    if agent is None:
        raise NotFound(
            f"The model '{request.agent_slug}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    if agent.tools and (request.params.get("n") or agent.default_params.get("n") or 1) > 1:
        raise InvalidRequest("n > 1 is not available with an agent that runs server-side tools.", param="n")
    with transaction.atomic():
        if idempotency_key:
            _idempotency_key_release_expired(organization, idempotency_key)
        # A session that exists is read and locked in one query; a new one is made, then locked.
        session = _session_locked(organization, request.session_id)
        if session is None:
            session = session_resolve(organization=organization, session_id=request.session_id, agent=agent)
            if session is not None:
                locked = Session.objects.select_for_update().filter(pk=session.pk).first()
                if locked is None:  # deleted meanwhile (idle sweep, DELETE): as if it had never been
                    session = session_resolve(
                        organization=organization, session_id=request.session_id, agent=agent
                    )
                    locked = Session.objects.select_for_update().get(pk=session.pk)
                session = locked
        if session is not None:
            # Looked at again under the session's lock: a request with the same key may have
            # stored its turn while this one waited for the lock.
            earlier = (
                _turn_for_idempotency_key(organization, idempotency_key, fingerprint)
                if idempotency_key
                else _retried_turn(session, fingerprint, client_retry)
            )
            if earlier is not None:
                return earlier
        if any(message["role"] == "tool" for message in request.messages):
            # After a reset, a tool result can only answer a call of the request itself.
            keeps_transcript = session is not None and not request.params.get("session_reset")
            stored = (
                [message.as_openai() for message in session_transcript(session=session)]
                if keeps_transcript
                else []
            )
            request = replace(request, messages=answer_open_tool_calls(stored, request.messages))
        # Only a request with an Idempotency-Key can lose a race to store its turn (to one with
        # the same key), so only such a request pays for the savepoint it recovers through.
        recoverable = transaction.atomic() if idempotency_key else nullcontext()
        try:
            with recoverable:
                turn = Turn.objects.create(
                    organization=organization,
                    session=session,
                    position=(session.turn_count + 1) if session else 1,
                    agent=agent,
                    api_key=api_key,
                    user=user,
                    model=request.agent_slug,
                    params=request.params,
                    input_messages=request.messages,
                    fingerprint=fingerprint,
                    idempotency_key=idempotency_key or None,
                )
        except IntegrityError:
            if not idempotency_key:
                raise
            # A concurrent request with the same Idempotency-Key won the race.
            earlier = _turn_for_idempotency_key(organization, idempotency_key, fingerprint)
            if earlier is None:
                raise
            return earlier
        if session is not None:
            session_record_turn(session=session, agent=agent, end_user=request.params.get("user"))
        transaction.on_commit(lambda: turn_enqueue(turn.id))
    return turn


def _session_locked(organization: Organization, session_id: str | None) -> Session | None:
    """The organization's session with this id, locked (select_for_update); None when it does not
    exist (or no id was given). Call inside a transaction."""
    if session_id is None:
        return None
    sessions = Session.objects.select_for_update()
    return sessions.filter(organization=organization, external_id=session_id).first()


def _default_agent_slug(organization: Organization) -> str:
    default = automation_get(organization=organization).default_agent
    if default is None:
        raise validation_error(
            {
                "model": [
                    ErrorDetail(
                        "This field is required (the organization has no default agent).", code="required"
                    )
                ]
            }
        )
    return default.slug


def _fingerprint(request: TurnRequest) -> str:
    """The SHA-256 of json.dumps([agent, session, messages, params], sort_keys=True), its text
    made a message at a time: one call to the encoder for the largest request (megabytes) would
    hold the interpreter lock, and with it every other request of the web process, for tens of
    milliseconds; a message at a time, the lock is handed over in between."""

    def encoded(value: Any) -> bytes:
        return json.dumps(value, sort_keys=True, default=str).encode()

    digest = hashlib.sha256(b"[" + encoded(request.agent_slug) + b", " + encoded(request.session_id) + b", [")
    for index, message in enumerate(request.messages):
        digest.update(b", " + encoded(message) if index else encoded(message))
    digest.update(b"], " + encoded(request.params) + b"]")
    return digest.hexdigest()


def _turn_for_idempotency_key(organization: Organization, key: str, fingerprint: str) -> Turn | None:
    """The finished turn this key made for this same request, to answer again; None when the key
    names no turn. As Stripe does: a key used for a different request is refused (400), and so is
    a request whose turn is still being answered (409 with Retry-After: the SDK retries it, and
    gets the answer once the turn has finished)."""
    earlier = turn_by_idempotency_key(organization=organization, key=key)
    if earlier is None:
        return None
    if earlier.fingerprint != fingerprint:
        raise InvalidRequest(
            "This Idempotency-Key was already used with a different request.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    if not earlier.is_finished:
        raise Conflict(
            f"Another request with this Idempotency-Key is still being answered (turn {earlier.id}). "
            f"Retry once it has finished, or follow it with GET /v1/turns/{earlier.id}/events.",
            param="Idempotency-Key",
            code="idempotency_key_in_use",
            headers={"Retry-After": str(IDEMPOTENCY_KEY_IN_USE_RETRY_SECONDS)},
        )
    return earlier


# How soon a request whose key's turn is still being answered should come back.
IDEMPOTENCY_KEY_IN_USE_RETRY_SECONDS = 1


def _idempotency_key_release_expired(organization: Organization, key: str) -> None:
    """An expired key names nothing: take it off its old turn, so that the new turn can hold it."""
    Turn.objects.filter(
        organization=organization, idempotency_key=key, queued_at__lt=idempotency_key_cutoff()
    ).update(idempotency_key=None)


# A resend of a failed or cancelled turn's request runs it again.
_NOT_RETRIED = (Status.FAILED, Status.CANCELLED)


def _retried_turn(session: Session, fingerprint: str, client_retry: bool) -> Turn | None:
    latest = Turn.objects.filter(session=session).order_by("-position").first()
    if latest is None or latest.fingerprint != fingerprint or latest.status in _NOT_RETRIED:
        return None
    window = timedelta(seconds=settings.PARLEY_RETRY_WINDOW_SECONDS)
    if client_retry or latest.queued_at >= timezone.now() - window:
        return latest
    return None


def turn_cancel(*, turn: Turn) -> Turn:
    """Cancel a queued or running turn. A queued turn ends at once; a running one is stopped by
    its runner within a second, which keeps what was produced so far. Cancelling a cancelled turn
    changes nothing; a completed or failed one is a conflict."""
    now = timezone.now()
    with transaction.atomic():
        cancelled_error = stored_error(TURN_CANCELLED)
        queued = Turn.objects.filter(pk=turn.pk, status=Status.QUEUED).update(
            status=Status.CANCELLED, finished_at=now, error=cancelled_error
        )
        if queued:
            events = [turn_event(next_event_seq(turn.id), ERROR, TURN_CANCELLED.payload())]
            store_events(turn.id, events, attempt=0)
            turn_usage_record(turn=turn, status=Status.CANCELLED, usage=None, finished_at=now)
        elif Turn.objects.filter(pk=turn.pk, status=Status.RUNNING).update(
            status=Status.CANCELLED, error=cancelled_error
        ):
            pass
        elif not Turn.objects.filter(pk=turn.pk, status=Status.CANCELLED).exists():
            raise Conflict(f"Turn {turn.id} has already finished.", code="turn_finished")
    if queued:
        publish_turn_events(turn.id, events)
        turn_start_next(turn)
    turn.refresh_from_db()
    return turn
