"""Where turns run. Both executors run the same code, sessions.turns.turn_execute.

- inline (embedded mode): a thread pool in the web process, driven from its event loop so the
  in-memory channel layer reaches the listeners in the same loop;
- celery (production): the turn id goes to a worker through the broker.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Protocol

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import close_old_connections

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
    def __init__(self, max_workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="parley-turn")
        self._tasks: set[asyncio.Task] = set()
        self._server_loop: asyncio.AbstractEventLoop | None = None

    def submit(self, turn_id: str) -> None:
        # Called from a sync_to_async thread of the web server, asgiref knows its event loop; from
        # the periodic thread (recovery), the loop a request brought before.
        loop: asyncio.AbstractEventLoop | None = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
        if loop is None:
            loop = self._server_loop
        else:
            self._server_loop = loop
        if loop is None or loop.is_closed():
            # No event loop (a management command, a shell): there are no listeners to wake.
            self._pool.submit(run_turn_job, turn_id)
            return
        loop.call_soon_threadsafe(self._spawn, loop, turn_id)

    def _spawn(self, loop: asyncio.AbstractEventLoop, turn_id: str) -> None:
        job = sync_to_async(run_turn_job, thread_sensitive=False, executor=self._pool)
        task = loop.create_task(job(turn_id))
        self._tasks.add(task)  # keep a reference until done, or the task may be collected
        task.add_done_callback(self._tasks.discard)


class CeleryExecutor:
    def submit(self, turn_id: str) -> None:
        from sessions.tasks import execute_turn

        execute_turn.delay(turn_id)


@cache
def turn_executor() -> TurnExecutor:
    if settings.PARLEY_EXECUTOR == "celery":
        return CeleryExecutor()
    return InlineExecutor(max_workers=settings.PARLEY_INLINE_WORKERS)
