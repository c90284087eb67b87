"""The life of a turn: submitted by a request, claimed and run by an executor, finished.

Turns of one session run one after the other, in the order they arrived (`position`). A turn
is claimed with a conditional UPDATE that only succeeds for the oldest unfinished turn of its
session, and a partial unique index allows one running turn per session. Nothing holds a lock
while the agent runs; every write of a runner (the turn's row, its event batches) is fenced by
the attempt number, so a turn taken over after its lease expired cannot be finished twice and a
runner that lost it writes nothing more. Turns that nobody runs are handed over again, or
failed at the attempt cap, by sessions/recovery.py."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from rest_framework.exceptions import ErrorDetail

from accounts.automation import automation_get
from agents.backends import backend_for
from agents.backends.base import AgentCall, ChoiceDelta
from agents.redaction import agent_secrets, redacted_error
from agents.selectors import agent_get_enabled
from agents.tools import server_tools_for
from agents.tools.base import ToolContext
from config.db import release_pooled_connections
from config.errors import ApiError, Conflict, InvalidRequest, NotFound, ServerError, validation_error
from sessions.agent_loop import StoredMessage, ToolStep, run_agent_loop
from sessions.events import CHUNK, DONE, ERROR, RESTART, TOOL_STEP, USAGE, publish_turn_events, turn_event
from sessions.executors import turn_executor
from sessions.history import history_window
from sessions.limits import turn_limits_renew
from sessions.models import Session, Turn
from sessions.selectors import idempotency_key_cutoff, session_transcript, turn_by_idempotency_key
from sessions.services import (
    session_auto_title,
    session_record_turn,
    session_resolve,
    transcript_append,
    transcript_reset,
)
from sessions.streaming import (
    FLUSH_SECONDS,
    EventWriter,
    ReplyAccumulator,
    chunk_base,
    delta_chunk,
    next_event_seq,
    pump,
    store_events,
    tool_step_chunk,
    usage_chunk,
    usage_payload,
)
from sessions.transcript import answer_open_tool_calls, unseen_messages
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
    params starts the transcript over, when the turn stores its messages (_turn_store_input)."""
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
        session = session_resolve(organization=organization, session_id=request.session_id, agent=agent)
        if session is not None:
            locked = Session.objects.select_for_update().filter(pk=session.pk).first()
            if locked is None:  # deleted meanwhile (idle sweep, DELETE): as if it had never been
                session = session_resolve(
                    organization=organization, session_id=request.session_id, agent=agent
                )
                locked = Session.objects.select_for_update().get(pk=session.pk)
            session = locked
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
        try:
            with transaction.atomic():
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
            # A concurrent request with the same Idempotency-Key won the race.
            earlier = _turn_for_idempotency_key(organization, idempotency_key or "", fingerprint)
            if earlier is None:
                raise
            return earlier
        if session is not None:
            session_record_turn(session=session, agent=agent, end_user=request.params.get("user"))
        transaction.on_commit(lambda: turn_enqueue(turn.id))
    return turn


def turn_enqueue(turn_id: str) -> None:
    """Hand a turn to the executor. Call after its row is committed. A failure to hand it over
    (the broker is down) is logged, not raised: the turn stays queued, and recovery hands it
    over again once the broker is back (sessions/recovery.py), so the request that made it goes
    on waiting for its answer instead of failing with the turn orphaned."""
    try:
        turn_executor().submit(turn_id)
    except Exception:
        logger.warning(
            "Turn %s stays queued: the executor refused it; recovery retries", turn_id, exc_info=True
        )


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
    if (
        latest is None
        or latest.fingerprint != fingerprint
        or latest.status in (Status.FAILED, Status.CANCELLED)
    ):
        return None
    window = timedelta(seconds=settings.PARLEY_RETRY_WINDOW_SECONDS)
    if client_retry or latest.queued_at >= timezone.now() - window:
        return latest
    return None


def turn_execute(*, turn_id: str) -> None:
    """Run a turn if it is this caller's to run; otherwise do nothing (idempotent).

    The turn's new messages join the transcript before the agent runs. The agent's stream is
    relayed as events while it runs; the answer (or the error, or what was produced before a
    cancel) is stored at the end together with the stream's terminal event. Then the session's
    next turn is started.

    When the runner itself fails (the database is unreachable, say), the exception is raised
    with the turn still running: its lease is ended here if the database still answers, and
    recovery runs it again, or fails it at the attempt cap."""
    turn = _turn_claim(turn_id)
    if turn is None:
        return
    try:
        _turn_run(turn)
    except Exception:
        _turn_release(turn)
        raise
    finally:
        turn_start_next(turn)


def _turn_release(turn: Turn) -> None:
    try:
        _fenced(turn).update(lease_expires_at=timezone.now())
    except Exception:  # the lease then runs out by itself
        logger.warning("Could not release the lease of turn %s", turn.id, exc_info=True)


def _turn_run(turn: Turn) -> None:
    writer = EventWriter(turn)
    reply = ReplyAccumulator()  # what the client sees
    stored: list[dict[str, Any]] = []  # what the session keeps: every step's messages
    step_text: list[str] = []  # the visible text since the last stored message (kept on cancel)
    watch = _OwnershipWatch(turn)
    stop = threading.Event()
    try:
        if writer.seq:  # an earlier attempt's events are stored: this attempt's supersede them
            writer.add(RESTART, turn_restarted(turn.id, restart_seq=writer.seq + 1).payload())
            writer.flush()
        conversation = _turn_store_input(turn)
        agent = turn.agent
        if agent is None:
            raise ServerError("The agent of this turn was deleted.", code="agent_deleted")
        session_id = turn.session.external_id if turn.session_id else None
        base = chunk_base(turn, session_id)
        legacy = bool(turn.params.get("legacy_function_call"))
        call = AgentCall(
            messages=conversation,
            params={**agent.default_params, **turn.params},
            backend_config=agent.backend_config,
            context={
                "agent": agent.slug,
                "session_id": session_id,
                "turn_id": turn.id,
                "organization": turn.organization.slug,
            },
            stop=stop,  # the backend drops its connection when the runner stops listening
        )
        loop = run_agent_loop(
            backend_for(agent.backend),
            call,
            server_tools=server_tools_for(agent.tools),
            max_steps=agent.max_tool_steps,
            context=ToolContext(
                organization=turn.organization.slug, agent=agent.slug, session_id=session_id, turn_id=turn.id
            ),
        )
        for item in pump(loop, tick_seconds=FLUSH_SECONDS, stop=stop):
            if isinstance(item, ChoiceDelta):
                reply.add(item)
                if reply.started_output and watch.first_token_at is None:
                    watch.first_token_at = timezone.now()
                if item.index == 0 and item.delta.get("content"):
                    step_text.append(item.delta["content"])
                writer.add(CHUNK, delta_chunk(base, item, legacy_functions=legacy))
            elif isinstance(item, ToolStep):
                writer.add(TOOL_STEP, tool_step_chunk(base, item.payload))
            elif isinstance(item, StoredMessage):
                stored.append(item.message)
                step_text.clear()
            elif item is not None:
                reply.add(item)
            writer.flush_if_due()
            if writer.superseded or not watch.still_ours():
                stop.set()
                if step_text:
                    stored.append({"role": "assistant", "content": "".join(step_text)})
                _turn_finish_cancelled(turn, reply, writer, stored)
                return
            # Between these short steps the runner waits on the agent, for minutes perhaps: it
            # waits without a database connection, so that waiting runners cannot drain the pool.
            release_pooled_connections()
        writer.add(USAGE, usage_chunk(base, usage_payload(reply.usage)))
        writer.add(DONE)
        _turn_finish(
            turn,
            writer,
            status=Status.COMPLETED,
            reply=reply,
            stored=stored,
            first_token_at=watch.first_token_at,
        )
    except Exception as exc:
        stop.set()
        error = exc if isinstance(exc, ApiError) else None
        if error is None:
            logger.exception("Turn %s failed", turn.id)
            error = ServerError(
                f"The agent failed while answering ({type(exc).__name__}).", code="agent_error"
            )
        # The one way out for a backend's error: an upstream's or webhook's text may quote the
        # agent's key; from here it is answered, streamed, stored and exported.
        error = redacted_error(error, secrets=agent_secrets(turn.agent))
        writer.add(ERROR, error.payload())
        _turn_finish(
            turn,
            writer,
            status=Status.FAILED,
            stored=stored,
            error={"status": error.status, **error.payload()},
        )


class _OwnershipWatch:
    """Renews the turn's lease while it runs and notices when the turn stops being this
    runner's (cancelled, or taken over by another worker after a lost lease). Each look is one
    short query: between looks the runner holds no connection (release_pooled_connections)."""

    CHECK_SECONDS = 0.5

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.first_token_at: datetime | None = None
        self._next_check = time.monotonic() + self.CHECK_SECONDS
        self._next_renewal = time.monotonic() + settings.PARLEY_TURN_LEASE_SECONDS / 3

    def still_ours(self) -> bool:
        now = time.monotonic()
        if now >= self._next_renewal:
            self._next_renewal = now + settings.PARLEY_TURN_LEASE_SECONDS / 3
            lease = timezone.now() + timedelta(seconds=settings.PARLEY_TURN_LEASE_SECONDS)
            renewed = bool(_fenced(self.turn).update(lease_expires_at=lease))
            if renewed:
                turn_limits_renew(self.turn)  # its concurrency slot lives as long as its lease
            return renewed
        if now >= self._next_check:
            self._next_check = now + self.CHECK_SECONDS
            return _fenced(self.turn).exists()
        return True


def _turn_claim(turn_id: str) -> Turn | None:
    now = timezone.now()
    earlier_unfinished = Turn.objects.filter(
        session=OuterRef("session"),
        position__lt=OuterRef("position"),
        status__in=[Status.QUEUED, Status.RUNNING],
    )
    claimable = Q(status=Status.QUEUED) | Q(status=Status.RUNNING, lease_expires_at__lt=now)
    try:
        with transaction.atomic():
            claimed = (
                Turn.objects.filter(claimable, pk=turn_id, attempts__lt=settings.PARLEY_TURN_MAX_ATTEMPTS)
                .filter(~Exists(earlier_unfinished))
                .update(
                    status=Status.RUNNING,
                    attempts=F("attempts") + 1,
                    lease_expires_at=now + timedelta(seconds=settings.PARLEY_TURN_LEASE_SECONDS),
                    started_at=now,
                )
            )
    except IntegrityError:  # another turn of the session holds the running slot
        return None
    if not claimed:
        return None
    return Turn.objects.select_related("agent", "session", "organization").get(pk=turn_id)


def _turn_store_input(turn: Turn) -> list[dict[str, Any]]:
    """Append the turn's new messages to the transcript (once, even when a turn is taken over)
    and return the conversation as the agent sees it.

    Done when the turn is claimed, not when it was requested, so that `session_reset` and
    auto-titling act in the order the session's turns run. The organization's history window,
    when set, wins over the agent's."""
    agent = turn.agent
    automation = automation_get(organization=turn.organization)
    system = [{"role": "system", "content": agent.system_prompt}] if agent and agent.system_prompt else []
    window = {
        "max_messages": _first_set(automation.history_max_messages, agent and agent.history_max_messages),
        "max_tokens": _first_set(automation.history_max_tokens, agent and agent.history_max_tokens),
    }
    if turn.session_id is None:
        return system + history_window(turn.input_messages, **window)
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=turn.session_id)
        transcript = session_transcript(session=session)
        if not any(message.turn_id == turn.id for message in transcript):
            if turn.params.get("session_reset"):
                transcript_reset(session=session)
                transcript = []
            stored = [message.as_openai() for message in transcript]
            transcript += transcript_append(
                session=session, messages=unseen_messages(stored, turn.input_messages), turn=turn
            )
            if automation.auto_title and not session.title:
                session_auto_title(session=session, transcript=transcript)
    return system + history_window([message.as_openai() for message in transcript], **window)


def _first_set(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def _fenced(turn: Turn):
    """The turn, if this attempt still owns it: the fence for every write after the claim."""
    return Turn.objects.filter(pk=turn.pk, status=Status.RUNNING, attempts=turn.attempts)


def _turn_finish(
    turn: Turn,
    writer: EventWriter,
    *,
    status: str,
    stored: list[dict[str, Any]],
    reply: ReplyAccumulator | None = None,
    first_token_at: datetime | None = None,
    error: dict | None = None,
) -> None:
    """Store how the turn ended, the messages of its steps and the stream's last events, at once."""
    now = timezone.now()
    events = writer.take_pending()
    owned = True
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=turn.session_id) if turn.session_id else None
        fields: dict = {"status": status, "finished_at": now, "lease_expires_at": None, "error": error}
        if reply is not None:
            fields.update(
                output={"choices": reply.choices()},
                usage=usage_payload(reply.usage),
                first_token_at=first_token_at or now,
            )
        owned = bool(_fenced(turn).update(**fields))
        if owned:
            turn_usage_record(turn=turn, status=status, usage=fields.get("usage"), finished_at=now)
            if session is not None:
                transcript_append(session=session, messages=stored, turn=turn)
            store_events(turn.id, events, attempt=turn.attempts)
    if owned:
        publish_turn_events(turn.id, events)
        return
    # A cancel that came after the runner's last look ends the turn as cancelled, with what it
    # produced; a turn taken over by another worker is that worker's to finish (this is a no-op).
    writer.put_back([event for event in events if event["kind"] not in (DONE, USAGE, ERROR)])
    _turn_finish_cancelled(turn, reply or ReplyAccumulator(), writer, stored)


def _turn_finish_cancelled(
    turn: Turn, reply: ReplyAccumulator, writer: EventWriter, stored: list[dict[str, Any]]
) -> None:
    """Keep what the agent produced before the cancel (finished steps, and the text of the
    current one: a half-streamed tool call is not a call) and end the stream."""
    writer.add(ERROR, TURN_CANCELLED.payload())
    events = writer.take_pending()
    choices = reply.choices(complete_calls_only=True)
    finished_at, usage = timezone.now(), usage_payload(reply.usage)
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=turn.session_id) if turn.session_id else None
        updated = Turn.objects.filter(
            pk=turn.pk, status=Status.CANCELLED, attempts=turn.attempts, finished_at__isnull=True
        ).update(finished_at=finished_at, output={"choices": choices}, usage=usage)
        if not updated:
            return
        turn_usage_record(turn=turn, status=Status.CANCELLED, usage=usage, finished_at=finished_at)
        if session is not None:
            transcript_append(session=session, messages=stored, turn=turn)
        store_events(turn.id, events, attempt=turn.attempts)
    publish_turn_events(turn.id, events)


TURN_CANCELLED = ApiError("The turn was cancelled.", code="turn_cancelled")


def turn_restarted(turn_id: str, *, restart_seq: int) -> ServerError:
    """The restart marker: stored where a new attempt's events begin, after those of the attempt
    it took over from. A listener that got some of the old attempt's events gets this as its
    last event (sessions/api/sse.py); following the turn again from it gives the new answer."""
    return ServerError(
        f"The worker answering turn {turn_id} was lost and the turn started over. Follow "
        f"GET /v1/turns/{turn_id}/events again with Last-Event-ID: {restart_seq} for the new answer.",
        code="turn_restarted",
    )


def turn_cancel(*, turn: Turn) -> Turn:
    """Cancel a queued or running turn. A queued turn ends at once; a running one is stopped by
    its runner within a second, which keeps what was produced so far. Cancelling a cancelled turn
    changes nothing; a completed or failed one is a conflict."""
    now = timezone.now()
    with transaction.atomic():
        cancelled_error = {"status": TURN_CANCELLED.status, **TURN_CANCELLED.payload()}
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


def turn_start_next(turn: Turn) -> None:
    """Hand the session's next queued turn to the executor (call when `turn` has ended)."""
    if turn.session_id is None:
        return
    next_turn = (
        Turn.objects.filter(session_id=turn.session_id, status=Status.QUEUED)
        .order_by("position")
        .values_list("pk", flat=True)
        .first()
    )
    if next_turn is not None:
        Turn.objects.filter(pk=next_turn, status=Status.QUEUED).update(enqueued_at=timezone.now())
        turn_enqueue(next_turn)


def turn_error(turn: Turn) -> ApiError:
    """The stored error of a failed or cancelled turn, to raise again to the client."""
    stored = turn.error or {}
    body = stored.get("error", {})
    error = ApiError(body.get("message", "The turn failed."), param=body.get("param"), code=body.get("code"))
    error.status = stored.get("status", 500)
    error.error_type = body.get("type", "server_error")
    return error
