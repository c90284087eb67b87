"""Where turns run. Both executors run the same code, sessions.turns.turn_execute.

- inline (embedded mode): a thread pool in the web process, driven from its event loop so the
  in-memory channel layer reaches the listeners in the same loop, with a share of its threads
  per organization;
- celery (production): the turn id goes to a worker through the broker.
"""

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
from django.db import close_old_connections

from sessions.models import Turn

logger = logging.getLogger(__name__)


class TurnExecutor(Protocol):
    def submit(self, turn_id: str) -> None:
        """Start the turn soon. Call after the turn's row is committed (transaction.on_commit)."""


def run_turn_job(turn_id: str) -> None:
    """One execution of a turn, as a worker thread or task runs it.

    A runner that fails (the database went away mid-turn) leaves its turn running with its lease
    ended or running out: recovery (sessions/recovery.py) runs it again, or fails it at the
    attempt cap. So the failure is logged here and not raised: a Celery retry or redelivery
    would only find the turn still leased."""
    from sessions.turns import turn_execute

    close_old_connections()
    try:
        turn_execute(turn_id=turn_id)
    except Exception:
        logger.exception("Turn %s could not be executed; recovery will run it again", turn_id)
    finally:
        close_old_connections()


class InlineExecutor:
    """Runs turns on a pool of threads of this process. At most `per_organization` of one
    organization's turns hold a thread at once; its further turns wait here, in the order they
    came, for one of them to end. So an organization whose agent is slow (or stuck until its
    deadline) takes at most that many threads, and the others' turns still start at once."""

    def __init__(self, max_workers: int, per_organization: int) -> None:
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
            run_turn_job(turn_id)
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
        from sessions.tasks import execute_turn

        execute_turn.delay(turn_id)


@cache
def turn_executor() -> TurnExecutor:
    if settings.PARLEY_EXECUTOR == "celery":
        return CeleryExecutor()
    return InlineExecutor(
        max_workers=settings.PARLEY_INLINE_WORKERS,
        per_organization=settings.PARLEY_INLINE_TURNS_PER_ORGANIZATION,
    )
