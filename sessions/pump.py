"""The pump: a backend's stream iterated on a thread of its own, so that the runner keeps control
(flushes, renews its lease, notices a cancel) while the agent is silent."""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Iterator

from agents.backends.base import StreamItem
from sessions.event_store import BATCH_MAX_EVENTS


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


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

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(produce,), daemon=True, name="parley-agent").start()
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
