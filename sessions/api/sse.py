"""Server-Sent Events for a turn: replay what is stored after a position, then follow it live
until its terminal event. The stored batches are the record; the channel layer only brings
events sooner. A stream always ends: with [DONE], or an error event (agent error, cancel,
worker lost, nothing heard for too long)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Literal

from django.conf import settings
from django.utils import timezone

from config.db import db_call
from config.errors import ApiError, GatewayTimeout, ServerError
from sessions.event_store import stored_events_page
from sessions.events import (
    ERROR,
    RECHECK_SECONDS,
    RESTART,
    TERMINAL_KINDS,
    TOOL_STEP,
    USAGE,
    TurnEvent,
    TurnInbox,
    turn_event,
)
from sessions.models import Turn

logger = logging.getLogger(__name__)

# A running turn whose lease expired this long ago has lost its worker, and recovery (which runs
# every PARLEY_RECOVERY_SECONDS) has not taken it over or ended it: it is not running.
LEASE_GRACE_SECONDS = 5


def sse_event(event: TurnEvent) -> str:
    """The event on the wire; its data was serialized once, when it was made (turn_event)."""
    return f"id: {event['seq']}\ndata: {event['data']}\n\n"


async def sse_stream(
    turn_id: str, *, after_seq: int, include_usage: bool, include_tool_steps: bool = False
) -> AsyncIterator[str]:
    """The turn's events as SSE text, with a comment line at least every keep-alive interval."""
    loop = asyncio.get_running_loop()
    last_write = loop.time()
    last_seq = after_seq
    try:
        async for event in follow_turn(turn_id, after_seq=after_seq):
            if event is None:
                if loop.time() - last_write >= settings.PARLEY_SSE_KEEPALIVE_SECONDS:
                    last_write = loop.time()
                    yield ": keep-alive\n\n"
                continue
            last_seq = event["seq"]
            if (event["kind"] == USAGE and not include_usage) or (
                event["kind"] == TOOL_STEP and not include_tool_steps
            ):
                continue
            last_write = loop.time()
            yield sse_event(event)
    except ApiError as error:  # a known failure (the database went away): the client follows again
        yield sse_event(_synthetic_error(last_seq, error))
    except Exception:
        # The stream has started, so the status line is sent: end it with the envelope.
        logger.exception("Streaming turn %s failed", turn_id)
        error = ServerError("The server had an error while streaming this turn.", code="stream_error")
        yield sse_event(_synthetic_error(last_seq, error))


async def follow_turn(turn_id: str, *, after_seq: int) -> AsyncIterator[TurnEvent | None]:
    """Events with seq > after_seq in order, each once, up to the terminal one; None whenever
    nothing new came for a moment (so the caller can send keep-alives). A finished turn's
    stream ends after what it stored, even when that is nothing (asked from its last event).

    A turn taken over after its worker was lost holds the lost attempt's events, a restart
    marker at seq S, then the new attempt's events. A listener that holds none of the lost
    attempt's events (it starts from 0, or at S or later) skips them and the marker, and so sees
    one answer; one that holds some (0 < after_seq < S, or it got them live) gets the marker as
    its last event, and following the turn again after S gives it the new answer whole."""
    loop = asyncio.get_running_loop()
    cursor = _Cursor(after_seq)
    heard_at = loop.time()
    finished = False
    async with TurnInbox(turn_id) as inbox:
        while True:
            stored, more = await db_call(
                stored_events_page, turn_id, cursor.next_seq, skip_superseded=not cursor.holds_events
            )
            if stored:
                heard_at = loop.time()
            for event in cursor.take(stored):
                yield event
                if cursor.ended:
                    return
            if more:
                continue
            if finished:
                return
            if loop.time() - heard_at >= settings.PARLEY_STREAM_IDLE_SECONDS:
                yield _synthetic_error(cursor.next_seq - 1, _silent_too_long(turn_id))
                return
            ended = await db_call(_ended_without_terminal_event, turn_id)
            if ended == "finished":
                # A turn stores its last events with its finish: one more read gets all it has.
                finished = True
                continue
            if ended is not None:
                yield _synthetic_error(cursor.next_seq - 1, ended)
                return
            # Live: take events from the layer while they follow on without a gap.
            while True:
                message = await inbox.receive(RECHECK_SECONDS)
                if message is None:
                    yield None
                    break
                fresh = [event for event in message["events"] if event["seq"] >= cursor.next_seq]
                if not fresh:
                    continue
                if fresh[0]["seq"] != cursor.next_seq:
                    break  # a message was lost: read the store
                heard_at = loop.time()
                for event in cursor.take(fresh):
                    yield event
                    if cursor.ended:
                        return


class _Cursor:
    """A listener's place in a turn's stream, and which events it is given (the superseding
    rule of follow_turn)."""

    def __init__(self, after_seq: int) -> None:
        self.next_seq = after_seq + 1
        self.holds_events = after_seq > 0
        self.ended = False

    def take(self, events: list[TurnEvent]) -> Iterator[TurnEvent]:
        """Of `events`, consecutive from `next_seq` on, those to give, in order; the cursor moves
        on as each is given, and `ended` is set with the last one."""
        restart = max((index for index, event in enumerate(events) if event["kind"] == RESTART), default=None)
        if restart is not None:
            if self.holds_events:
                events = [events[restart]]
            else:  # nothing of the superseded attempts was given: skip them and their marker
                self.next_seq = events[restart]["seq"] + 1
                events = events[restart + 1 :]
        for event in events:
            self.next_seq, self.holds_events = event["seq"] + 1, True
            self.ended = event["kind"] in TERMINAL_KINDS or event["kind"] == RESTART
            yield event
            if self.ended:
                return


def _ended_without_terminal_event(turn_id: str) -> ApiError | Literal["finished"] | None:
    """Why the turn can't produce its terminal event any more; "finished" when it has finished
    (then every event it will ever have is stored); None while its terminal event is to come."""
    turn = Turn.objects.filter(pk=turn_id).only("status", "lease_expires_at", "finished_at").first()
    if turn is None:
        return ServerError("The turn was deleted while it was streaming.", code="turn_deleted")
    if turn.finished_at is not None:
        return "finished"
    grace = LEASE_GRACE_SECONDS + 2 * settings.PARLEY_RECOVERY_SECONDS
    lease_lost = (
        turn.lease_expires_at is not None and (timezone.now() - turn.lease_expires_at).total_seconds() > grace
    )
    if turn.status in (Turn.Status.RUNNING, Turn.Status.CANCELLED) and lease_lost:
        return ServerError("The worker running this turn was lost.", code="worker_lost")
    return None


def _silent_too_long(turn_id: str) -> ApiError:
    return GatewayTimeout(
        f"Turn {turn_id} sent nothing for {settings.PARLEY_STREAM_IDLE_SECONDS:g} s. It may still be "
        f"running: follow it again with GET /v1/turns/{turn_id}/events.",
        code="turn_timeout",
    )


def _synthetic_error(last_seq: int, error: ApiError) -> TurnEvent:
    """An error event that ends a stream early but is not part of the turn's record: it carries
    the id of the last event given (0 when none), so that following the turn again with that
    Last-Event-ID misses nothing."""
    return turn_event(last_seq, ERROR, error.payload())
