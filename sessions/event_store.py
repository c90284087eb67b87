"""A turn's event store: its numbered stream events, written in coalesced batches by its runner
(EventWriter) and read back by listeners: the record a reconnecting client replays. Each batch
written is also published through the channel layer (sessions/events.py), only as a wake-up."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Min

from sessions.events import RESTART, TurnEvent, publish_turn_events, turn_event
from sessions.models import Turn, TurnEventBatch

# Events are written at once, unless a batch was written less than this long ago: then they wait
# for the rest of this time (or until BATCH_MAX_EVENTS of them are pending). So a stream's first
# delta is not delayed, and small deltas that come quickly are written together.
FLUSH_SECONDS = 0.05
BATCH_MAX_EVENTS = 256


class EventWriter:
    """Numbers a turn's events and writes them in batches: mid-stream through `flush_if_due`,
    and the last batch inside the transaction that finishes the turn (`take_pending`), so that
    a finished turn always has its terminal event stored."""

    def __init__(self, turn: Turn) -> None:
        self.turn_id = turn.id
        self.attempt = turn.attempts
        # A turn taken over after its lease expired numbers on after what was already stored. A
        # first attempt has nothing stored before it (a turn ended before it ran is never claimed).
        self.seq = next_event_seq(turn.id) - 1 if turn.attempts > 1 else 0
        self._pending: list[TurnEvent] = []
        self._flushed_at = float("-inf")  # nothing was written yet: the first batch goes at once
        # Set when a batch was refused: the turn is no longer this attempt's to write.
        self.superseded = False

    def add(self, kind: str, data: dict[str, Any] | None = None) -> None:
        self.seq += 1
        self._pending.append(turn_event(self.seq, kind, data))

    def flush_if_due(self) -> None:
        if self._pending and (
            len(self._pending) >= BATCH_MAX_EVENTS or time.monotonic() - self._flushed_at >= FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        """Write what is pending now, if the turn is still this attempt's (else drop it)."""
        events = self.take_pending()
        if store_events_fenced(self.turn_id, events, attempt=self.attempt):
            publish_turn_events(self.turn_id, events)
        elif events:
            self.superseded = True
        self._flushed_at = time.monotonic()

    def take_pending(self) -> list[TurnEvent]:
        events, self._pending = self._pending, []
        return events

    def put_back(self, events: list[TurnEvent]) -> None:
        """Return taken events, unwritten, to be written before any added later."""
        self._pending = events + self._pending


def store_events(turn_id: str, events: list[TurnEvent], *, attempt: int) -> None:
    """Store a batch. Call where the turn's ownership is settled: inside the transaction whose
    fenced update finished the turn, or through `store_events_fenced`."""
    if events:
        TurnEventBatch.objects.create(
            turn_id=turn_id,
            first_seq=events[0]["seq"],
            last_seq=events[-1]["seq"],
            events=json.dumps(events, separators=(",", ":")),
            attempt=attempt,
        )


def stored_events(turn_id: str, from_seq: int) -> list[TurnEvent]:
    """The turn's stored events from `from_seq` on, in order, exactly as they were made."""
    batches = TurnEventBatch.objects.filter(turn_id=turn_id, last_seq__gte=from_seq).order_by("first_seq")
    return _events_of(batches, from_seq)


def _events_of(batches: Iterable[TurnEventBatch], from_seq: int) -> list[TurnEvent]:
    return [event for batch in batches for event in json.loads(batch.events) if event["seq"] >= from_seq]


# Batches (of up to BATCH_MAX_EVENTS events each) a listener reads from the store at once.
STORE_PAGE_BATCHES = 4


def stored_events_page(turn_id: str, from_seq: int, *, skip_superseded: bool) -> tuple[list[TurnEvent], bool]:
    """The stored events from `from_seq` on, a page of STORE_PAGE_BATCHES batches at a time (a
    listener far behind, its client slow, holds one page, not the whole turn), and whether more
    are stored. With `skip_superseded` (a listener that holds none of the turn's events) the
    page starts at the latest restart marker, if it is further on: what comes before it is
    superseded, and a page that stopped short of it would hand the listener a lost attempt's
    events."""
    if skip_superseded:
        from_seq = max(from_seq, _latest_restart_seq(turn_id))
    batches = list(
        TurnEventBatch.objects.filter(turn_id=turn_id, last_seq__gte=from_seq).order_by("first_seq")[
            : STORE_PAGE_BATCHES + 1
        ]
    )
    return _events_of(batches[:STORE_PAGE_BATCHES], from_seq), len(batches) > STORE_PAGE_BATCHES


def _latest_restart_seq(turn_id: str) -> int:
    """Where the latest restart marker is, 0 if none: a takeover's first batch holds it."""
    takeovers_first_batches = (
        TurnEventBatch.objects.filter(turn_id=turn_id, attempt__gt=1)
        .values("attempt")
        .annotate(start=Min("first_seq"))
        .values_list("start", flat=True)
    )
    batches = (
        TurnEventBatch.objects.filter(turn_id=turn_id, first_seq__in=list(takeovers_first_batches))
        .order_by("-first_seq")
        .values_list("first_seq", "events")
    )
    return next((first for first, events in batches if json.loads(events)[0]["kind"] == RESTART), 0)


def store_events_fenced(turn_id: str, events: list[TurnEvent], *, attempt: int) -> bool:
    """Store a runner's batch only while the turn is still its attempt's and unfinished (running,
    or cancelled and not yet wound up by it); False when refused. The turn's row stays locked
    until the batch is in, so a takeover's claim waits for it and numbers on after it."""
    if not events:
        return True
    with transaction.atomic():
        owned = (
            Turn.objects.select_for_update()
            .filter(
                pk=turn_id,
                attempts=attempt,
                status__in=[Turn.Status.RUNNING, Turn.Status.CANCELLED],
                finished_at__isnull=True,
            )
            .exists()
        )
        if owned:
            store_events(turn_id, events, attempt=attempt)
    return owned


def next_event_seq(turn_id: str) -> int:
    last = (
        TurnEventBatch.objects.filter(turn_id=turn_id)
        .order_by("-last_seq")
        .values_list("last_seq", flat=True)
    )
    return (last.first() or 0) + 1
