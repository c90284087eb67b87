"""Running a turn: claimed by the executor's task, run through the agent loop, finished. Knows
nothing of HTTP: what it produces is the turn's row, its transcript and its stream events.

Turns of one session run one after the other, in the order they arrived (`position`). A turn
is claimed with a conditional UPDATE that only succeeds for the oldest unfinished turn of its
session, and a partial unique index allows one running turn per session. Nothing holds a lock
while the agent runs; every write of a runner (the turn's row, its event batches) is fenced by
the attempt number, so a turn taken over after its lease expired cannot be finished twice and a
runner that lost it writes nothing more. Turns that nobody runs are handed over again, or
failed at the attempt cap, by sessions/recovery.py."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from accounts.automation import automation_get
from agents.backends import backend_for
from agents.backends.base import AgentCall, ChoiceDelta
from agents.redaction import agent_secrets, redacted_error
from agents.tools import server_tools_for
from agents.tools.base import ToolContext
from config.db import release_pooled_connections
from config.errors import ApiError, ServerError
from sessions.agent_loop import StoredMessage, ToolStep, run_agent_loop
from sessions.chunks import (
    ReplyAccumulator,
    chunk_base,
    delta_chunk,
    tool_step_chunk,
    usage_chunk,
    usage_payload,
)
from sessions.errors import TURN_CANCELLED, stored_error, turn_restarted
from sessions.event_store import FLUSH_SECONDS, EventWriter, store_events
from sessions.events import CHUNK, DONE, ERROR, RESTART, TOOL_STEP, USAGE, publish_turn_events
from sessions.executors import turn_start_next
from sessions.history import history_window
from sessions.limits import limits_renew
from sessions.models import Message, Session, Turn
from sessions.pump import pump
from sessions.selectors import session_history, session_transcript, transcript_ends, transcript_user_messages
from sessions.services import session_auto_title, transcript_append, transcript_reset
from sessions.transcript import ends_needed, unseen_messages, unseen_messages_at_ends
from sessions.usage import turn_usage_record

logger = logging.getLogger(__name__)

Status = Turn.Status


def run_turn_job(turn_id: str) -> None:
    """One execution of a turn, as the task `parley.execute_turn` runs it on a worker or on the
    inline executor's threads.

    A runner that fails (the database went away mid-turn) leaves its turn running with its lease
    ended or running out: recovery (sessions/recovery.py) runs it again, or fails it at the
    attempt cap. So the failure is logged here and not raised: a Celery retry or redelivery
    would only find the turn still leased."""
    close_old_connections()
    try:
        turn_execute(turn_id=turn_id)
    except Exception:
        logger.exception("Turn %s could not be executed; recovery will run it again", turn_id)
    finally:
        close_old_connections()


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
            error=stored_error(error),
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
                limits_renew(turn=self.turn)  # its concurrency slot lives as long as its lease
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
    return Turn.objects.select_related("agent", "session", "organization__automation").get(pk=turn_id)


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
        # Only a turn taken over (a later attempt) may find its messages stored already.
        if turn.attempts == 1 or not Message.objects.filter(session=session, turn=turn).exists():
            if turn.params.get("session_reset"):
                transcript_reset(session=session)
            earlier = session.message_count
            stored = transcript_append(
                session=session, messages=_unseen_input(session, turn.input_messages), turn=turn
            )
            if automation.auto_title and not session.title:
                session_auto_title(session=session, transcript=transcript_user_messages(session=session))
            if not earlier:
                # The transcript is what was just stored: not read back (a large first request
                # stores thousands of messages).
                return system + history_window([message.as_openai() for message in stored], **window)
        return system + session_history(session=session, **window)


def _unseen_input(session: Session, incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turn's messages that the transcript does not hold yet, read from its two ends when it
    is long (sessions/transcript.py): storing a turn's input costs the same on any session."""
    if not session.message_count:
        return incoming  # nothing stored to compare with (a new session, or one just reset)
    count = ends_needed(incoming)
    if session.message_count > 2 * count:
        head, tail = transcript_ends(session=session, count=count)
        return unseen_messages_at_ends(
            [message.as_openai() for message in head], [message.as_openai() for message in tail], incoming
        )
    stored = [message.as_openai() for message in session_transcript(session=session)]
    return unseen_messages(stored, incoming)


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
