"""The pump: a backend's stream iterated on a thread of its own, so that the runner keeps control
(flushes, renews its lease, notices a cancel) while the agent is silent."""

from __future__ import annotations

import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable, Iterator
from functools import partial

from django.db import connections

from agents.backends.base import StreamItem
from sessions.event_store import BATCH_MAX_EVENTS


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()

# Threads that ran a producer wait here for the next one, so that a turn does not start a thread:
# under load, Thread.start (which waits for the new thread to run) cost milliseconds a turn.
# At most this many wait; more end when their producer does.
IDLE_PRODUCER_THREADS = 64
_idle: list[queue.SimpleQueue] = []
_idle_lock = threading.Lock()


def _on_a_thread(job: Callable[[], None]) -> None:
    """Run `job` on an idle producer thread, or on a new one when none is idle."""
    with _idle_lock:
        inbox = _idle.pop() if _idle else None
    if inbox is None:
        inbox = queue.SimpleQueue()
        threading.Thread(target=_serve, args=(inbox,), daemon=True, name="parley-agent").start()
    inbox.put(job)


def _serve(inbox: queue.SimpleQueue) -> None:
    while True:
        inbox.get()()  # a producer, which hands every error to its runner
        connections.close_all()  # what an agent's tool opened is not kept for the next turn
        with _idle_lock:
            if len(_idle) >= IDLE_PRODUCER_THREADS:
                return
            _idle.append(inbox)


def _forget_idle_threads_after_fork() -> None:
    global _idle, _idle_lock
    # A forked child (a Celery prefork worker) has none of its parent's threads.
    _idle, _idle_lock = [], threading.Lock()


os.register_at_fork(after_in_child=_forget_idle_threads_after_fork)


def pump(
    items: Iterator[StreamItem], *, tick_seconds: float, stop: threading.Event
) -> Iterator[StreamItem | None]:
    """Iterate a backend's stream on a thread of its own, yielding None every `tick_seconds`
    when it has nothing new, so that the runner can flush, renew its lease and notice a
    cancellation while the agent is silent."""
    inbox: queue.Queue = queue.Queue(maxsize=BATCH_MAX_EVENTS * 4)

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                inbox.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the runner, which records it
            put(_Failure(exc))
        finally:
            # An answer the runner no longer wants ends here, on this thread, closing its
            # connection now rather than whenever the generator is collected.
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # nobody listens to this answer any more
                    close()

    _on_a_thread(partial(contextvars.copy_context().run, produce))
    try:
        while True:
            try:
                item = inbox.get(timeout=tick_seconds)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
