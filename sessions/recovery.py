"""Turns that nobody works on: handed to the executor again, or ended.

Run periodically: by celery beat in production, by a thread of the web process in the embedded
mode (sessions/periodic.py). Idempotent, and safe to run from any number of processes at once:
every change is a conditional UPDATE (or a row lock taken with skip_locked) that one of them
wins, and no lock is held across the call to the broker.

- A queued turn first in its session's queue, handed to the executor longer than
  PARLEY_TURN_REQUEUE_SECONDS ago and not started (its message was lost, the broker was down,
  the process that held it restarted), is handed over again.
- A running turn whose lease expired (its worker died or hung) is handed over again: the claim
  takes over an expired lease, as the next attempt. At the attempt cap it is failed instead,
  with its terminal error event and usage record, and the session's next turn is started.
- A turn cancelled while running whose runner was lost before winding it up is ended as
  cancelled, with its terminal event and usage record.
A second delivery of a turn is harmless: only one claim of it succeeds."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from config.errors import ApiError
from sessions.errors import TURN_CANCELLED, stored_error, turns_exhausted_error
from sessions.event_store import next_event_seq, store_events
from sessions.events import ERROR, publish_turn_events, turn_event
from sessions.executors import turn_enqueue, turn_start_next
from sessions.models import Turn
from sessions.usage import turn_usage_record

logger = logging.getLogger(__name__)

Status = Turn.Status
RECOVERY_BATCH = 500


@dataclass
class Recovered:
    """The ids of the turns one pass handed over again, failed, and wound up as cancelled."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"requeued": len(self.requeued), "failed": len(self.failed), "cancelled": len(self.cancelled)}


def turns_recover(*, batch_size: int = RECOVERY_BATCH) -> Recovered:
    """One recovery pass over every organization's unfinished turns (at most `batch_size` of
    each kind; the next pass takes the rest)."""
    now = timezone.now()
    recovered = Recovered()
    lost = Turn.objects.filter(finished_at__isnull=True, lease_expires_at__lt=now)
    at_cap = lost.filter(status=Status.RUNNING, attempts__gte=settings.PARLEY_TURN_MAX_ATTEMPTS)
    for turn_id in at_cap.values_list("pk", flat=True)[:batch_size]:
        if _turn_end_lost(turn_id, at_cap, status=Status.FAILED, error=turns_exhausted_error(), now=now):
            recovered.failed.append(turn_id)
    cancelled = lost.filter(status=Status.CANCELLED)
    for turn_id in cancelled.values_list("pk", flat=True)[:batch_size]:
        if _turn_end_lost(turn_id, cancelled, status=Status.CANCELLED, error=TURN_CANCELLED, now=now):
            recovered.cancelled.append(turn_id)
    for turn_id, enqueued_at in _turns_to_requeue(now)[:batch_size]:
        # One of several concurrent passes wins each turn; the claim settles the rest anyway.
        if Turn.objects.filter(pk=turn_id, enqueued_at=enqueued_at, finished_at__isnull=True).update(
            enqueued_at=now
        ):
            turn_enqueue(turn_id)
            recovered.requeued.append(turn_id)
    if recovered.requeued or recovered.failed or recovered.cancelled:
        logger.info("Turn recovery: %s", recovered.counts())
    return recovered


def _turns_to_requeue(now: datetime):
    earlier_unfinished = Turn.objects.filter(
        session=OuterRef("session"),
        position__lt=OuterRef("position"),
        status__in=[Status.QUEUED, Status.RUNNING],
    )
    waiting_first = Q(status=Status.QUEUED) & ~Exists(earlier_unfinished)
    lease_lost = Q(
        status=Status.RUNNING, lease_expires_at__lt=now, attempts__lt=settings.PARLEY_TURN_MAX_ATTEMPTS
    )
    handed_over_before = now - timedelta(seconds=settings.PARLEY_TURN_REQUEUE_SECONDS)
    return (
        Turn.objects.filter(finished_at__isnull=True, enqueued_at__lt=handed_over_before)
        .filter(waiting_first | lease_lost)
        .order_by("enqueued_at")
        .values_list("pk", "enqueued_at")
    )


def _turn_end_lost(turn_id: str, still_lost, *, status: str, error: ApiError, now: datetime) -> bool:
    """End a turn whose runner is gone: its status, its terminal event and its usage record at
    once, if it is still as `still_lost` found it (re-checked under its row lock). Then the
    session's next turn is started."""
    with transaction.atomic():
        turn = (
            still_lost.select_for_update(skip_locked=True, of=("self",))
            .select_related("agent")
            .filter(pk=turn_id)
            .first()
        )
        if turn is None:
            return False
        Turn.objects.filter(pk=turn.pk).update(
            status=status,
            finished_at=now,
            lease_expires_at=None,
            error=stored_error(error),
        )
        events = [turn_event(next_event_seq(turn.id), ERROR, error.payload())]
        store_events(turn.id, events, attempt=turn.attempts)
        turn_usage_record(turn=turn, status=status, usage=None, finished_at=now)
    publish_turn_events(turn.id, events)
    turn_start_next(turn)
    return True
