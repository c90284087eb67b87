"""Bounding outbound calls in time, and stopping them from another thread.

A client's timeout bounds each read, so a server that trickles its answer (a keep-alive newline
every second) keeps a call open for ever, and a thread blocked on a read hears of nothing else.
Inside `outbound_bounds(seconds=..., stop=...)`, every connection that an outbound client
(agents.egress) opens or reuses in this thread honours the block's bounds instead: a read waits
in slices of at most STOP_POLL_SECONDS, and gives up once the deadline has passed (a timeout:
httpx2.ReadTimeout, or the `openai` SDK's APITimeoutError) or once `stop` is set (a read error).
The call's response is then closed, and with it the connection, so the other side sees it go
within STOP_POLL_SECONDS of the stop.

The bounds live in a context variable, so they follow the thread of the call (and the threads
started with a copy of its context) whichever pooled connection it uses; a block inside another
replaces its bounds until it ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore2

# How often a read waiting on a quiet connection looks at its call's stop event.
STOP_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class CallBounds:
    deadline: float | None  # time.monotonic() by which the call must be done
    stop: threading.Event | None  # set by whoever no longer wants the answer

    @property
    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def pause(self, seconds: float) -> bool:
        """Wait `seconds` (a backoff between retries); False, at once, when the call is stopped
        or its deadline would pass meanwhile."""
        remaining = self.remaining()
        if remaining is not None and remaining <= seconds:
            return False
        if self.stop is None:
            time.sleep(seconds)
            return True
        return not self.stop.wait(seconds)


_current: ContextVar[CallBounds | None] = ContextVar("parley_outbound_bounds", default=None)


@contextmanager
def outbound_bounds(
    *, seconds: float | None = None, stop: threading.Event | None = None
) -> Iterator[CallBounds]:
    """Bound the outbound calls made inside the block: at most `seconds` from now, and no longer
    than `stop` stays unset. Usable inside a generator that yields between its calls, when the
    generator is iterated (and closed) on one thread, as the runner's agent thread does: the
    bounds belong to the context that entered the block."""
    bounds = CallBounds(deadline=None if seconds is None else time.monotonic() + seconds, stop=stop)
    previous = _current.get()
    _current.set(bounds)
    try:
        yield bounds
    finally:
        # Not a token reset: a generator closed by the garbage collector ends the block in
        # another context, where the token would be refused.
        _current.set(previous)


def current_bounds() -> CallBounds | None:
    return _current.get()


def check_connect(timeout: float | None) -> float | None:
    """The timeout for opening a connection within the current bounds; raises when the call is
    already stopped or out of time."""
    bounds = _current.get()
    if bounds is None:
        return timeout
    if bounds.stopped:
        raise httpcore2.ConnectError("The call was stopped.")
    if bounds.expired:
        raise httpcore2.ConnectTimeout("The call ran out of time.")
    return _earliest(timeout, bounds.remaining())


class BoundedStream(httpcore2.NetworkStream):
    """A connection whose reads and writes honour the current thread's `outbound_bounds`."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        bounds = _current.get()
        if bounds is None or (bounds.stop is None and bounds.deadline is None):
            return self._stream.read(max_bytes, timeout)
        give_up_at = None if timeout is None else time.monotonic() + timeout
        while True:
            if bounds.stopped:
                raise httpcore2.ReadError("The call was stopped.")
            if bounds.expired:
                raise httpcore2.ReadTimeout("The call ran out of time.")
            now = time.monotonic()
            wait = _earliest(
                STOP_POLL_SECONDS if bounds.stop is not None else None,
                bounds.remaining(),
                None if give_up_at is None else give_up_at - now,
            )
            try:
                # A read that times out consumes nothing: the next slice reads on where it was.
                return self._stream.read(max_bytes, timeout=max(wait, 0.001) if wait is not None else None)
            except httpcore2.ReadTimeout:
                if give_up_at is not None and time.monotonic() >= give_up_at:
                    raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        bounds = _current.get()
        if bounds is not None:
            if bounds.stopped:
                raise httpcore2.WriteError("The call was stopped.")
            if bounds.expired:
                raise httpcore2.WriteTimeout("The call ran out of time.")
            timeout = _earliest(timeout, bounds.remaining())
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
        return BoundedStream(self._stream.start_tls(ssl_context, server_hostname, check_connect(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _earliest(*timeouts: float | None) -> float | None:
    given = [timeout for timeout in timeouts if timeout is not None]
    return min(given) if given else None
