"""Where turns run: executors only hand a turn over. A turn is run by the task
`parley.execute_turn` (sessions/tasks.py), which calls the runner (sessions/runner.py).

- celery (production): the task goes to a worker through the broker;
- inline (embedded mode, which has no worker): the task runs on a thread pool in the web
  process, driven from its event loop so the in-memory channel layer reaches the listeners in
  the same loop, with a share of its threads per organization.

Both hand the task over by its name, as a broker does: this module sits below the runner,
which hands the session's next turn over through it when a turn ends (turn_start_next)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Protocol

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.utils import timezone

from config.celery import app as celery_app
from sessions.models import Turn

logger = logging.getLogger(__name__)

# The task that runs a turn (sessions/tasks.py).
EXECUTE_TURN = "parley.execute_turn"


class TurnExecutor(Protocol):
    def submit(self, turn_id: str) -> None:
        """Start the turn soon. Call after the turn's row is committed (transaction.on_commit)."""


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


def turn_start_next(turn: Turn) -> None:
    """Hand the session's next queued turn to the executor (call when `turn` has ended)."""
    if turn.session_id is None:
        return
    next_turn = (
        Turn.objects.filter(session_id=turn.session_id, status=Turn.Status.QUEUED)
        .order_by("position")
        .values_list("pk", flat=True)
        .first()
    )
    if next_turn is not None:
        Turn.objects.filter(pk=next_turn, status=Turn.Status.QUEUED).update(enqueued_at=timezone.now())
        turn_enqueue(next_turn)


class InlineExecutor:
    """Runs turns on a pool of threads of this process. At most `per_organization` of one
    organization's turns hold a thread at once; its further turns wait here, in the order they
    came, for one of them to end. So an organization whose agent is slow (or stuck until its
    deadline) takes at most that many threads, and the others' turns still start at once."""

    def __init__(self, max_workers: int, per_organization: int) -> None:
        # The tasks of the installed apps, registered as a worker registers them when it starts.
        celery_app.loader.import_default_modules()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="parley-turn")
        self._per_organization = per_organization
        self._lock = threading.Lock()
        self._running: dict[int, int] = {}  # organization id -> its turns holding a thread
        self._waiting: dict[int, deque[str]] = {}  # organization id -> its turns waiting for one
        self._tasks: set[asyncio.Task] = set()
        self._server_loop: asyncio.AbstractEventLoop | None = None

    def submit(self, turn_id: str) -> None:
        organization_id = _organization_of(turn_id)
        if organization_id is None:  # deleted meanwhile: nothing to run
            return
        with self._lock:
            if self._running.get(organization_id, 0) >= self._per_organization:
                waiting = self._waiting.setdefault(organization_id, deque())
                if turn_id not in waiting:  # recovery hands a waiting turn over again: once is enough
                    waiting.append(turn_id)
                return
            self._running[organization_id] = self._running.get(organization_id, 0) + 1
        self._start(turn_id, organization_id)

    def _start(self, turn_id: str, organization_id: int) -> None:
        # Called from a sync_to_async thread of the web server, asgiref knows its event loop; from
        # the periodic thread (recovery), the loop a request brought before.
        loop: asyncio.AbstractEventLoop | None = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
        if loop is None:
            loop = self._server_loop
        else:
            self._server_loop = loop
        if loop is None or loop.is_closed():
            # No event loop (a management command, a shell): there are no listeners to wake.
            self._pool.submit(self._run, turn_id, organization_id)
            return
        loop.call_soon_threadsafe(self._spawn, loop, turn_id, organization_id)

    def _spawn(self, loop: asyncio.AbstractEventLoop, turn_id: str, organization_id: int) -> None:
        job = sync_to_async(self._run, thread_sensitive=False, executor=self._pool)
        task = loop.create_task(job(turn_id, organization_id))
        self._tasks.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._tasks.discard)

    def _run(self, turn_id: str, organization_id: int) -> None:
        try:
            celery_app.tasks[EXECUTE_TURN](turn_id)
        finally:
            self._pass_on(organization_id)

    def _pass_on(self, organization_id: int) -> None:
        """A turn of the organization has ended: its place goes to the organization's next
        waiting turn, if any."""
        with self._lock:
            waiting = self._waiting.get(organization_id)
            if not waiting:
                self._running[organization_id] -= 1
                if not self._running[organization_id]:
                    del self._running[organization_id]
                return
            next_turn = waiting.popleft()
            if not waiting:
                del self._waiting[organization_id]
        self._start(next_turn, organization_id)


def _organization_of(turn_id: str) -> int | None:
    return Turn.objects.filter(pk=turn_id).values_list("organization_id", flat=True).first()


class CeleryExecutor:
    def submit(self, turn_id: str) -> None:
        celery_app.send_task(EXECUTE_TURN, args=[turn_id])


@cache
def turn_executor() -> TurnExecutor:
    if settings.PARLEY_EXECUTOR == "celery":
        return CeleryExecutor()
    return InlineExecutor(
        max_workers=settings.PARLEY_INLINE_WORKERS,
        per_organization=settings.PARLEY_INLINE_TURNS_PER_ORGANIZATION,
    )
