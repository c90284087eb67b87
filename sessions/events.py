"""Wake-ups through the Channels layer. The layer is at-most-once (channels_redis drops what
exceeds a channel's capacity), so it only wakes listeners and carries events as a shortcut:
the database stays the record, and listeners re-read it on a gap and on a timer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

# A listener re-reads the database at least this often, whatever the layer delivers.
RECHECK_SECONDS = 1.0
# After a failure of the layer, how often an inbox tries to subscribe again.
RESUBSCRIBE_SECONDS = RECHECK_SECONDS
# How long opening an inbox waits for its subscription before the listener goes on without it.
SUBSCRIBE_WAIT_SECONDS = 2.0
# How long a publisher waits for Redis before it gives the message up (listeners read the store).
PUBLISH_TIMEOUT_SECONDS = 1.0
# Messages an inbox keeps for a listener that is busy (its client reads slowly); more are dropped.
INBOX_MESSAGES = 4
# The kinds of a turn's stream events; a stream ends with one of the terminal two. RESTART marks
# where a new attempt's events begin after a takeover (see sessions/api/sse.py, follow_turn).
CHUNK, USAGE, TOOL_STEP, DONE, ERROR = "chunk", "usage", "tool_step", "done", "error"
RESTART = "restart"
TERMINAL_KINDS = frozenset({DONE, ERROR})


class TurnEvent(TypedDict):
    seq: int
    kind: str
    # The SSE `data:` text exactly as every listener gets it: serialized once, when the event
    # is made, so that a live stream, a replay and a resumed stream are the same bytes.
    data: str


def turn_event(seq: int, kind: str, data: dict[str, Any] | None = None) -> TurnEvent:
    """Event number `seq` of a turn's stream; `data` is a chunk or an error envelope (none for DONE)."""
    text = "[DONE]" if kind == DONE else json.dumps(data, separators=(",", ":"))
    return {"seq": seq, "kind": kind, "data": text}


# Inboxes' reader tasks that are unsubscribing: referenced until done, or they may be collected.
_background: set[asyncio.Task] = set()


def turn_group(turn_id: str) -> str:
    return f"turn.{turn_id}"


def publish_turn_events(turn_id: str, events: list[TurnEvent]) -> None:
    """Hand new events to whoever listens to the turn. Never raises: a lost message only makes
    a listener read the database instead."""
    group = turn_group(turn_id)
    message = {"type": "turn.events", "turn_id": turn_id, "events": events}
    try:
        layer = get_channel_layer()
        if isinstance(layer, InMemoryChannelLayer):
            # The embedded mode's layer lives on the web process's own event loop.
            async_to_sync(layer.group_send)(group, message)
        else:
            _publisher().send(layer.group_send(group, message))
    except Exception:
        logger.warning("Could not publish events of turn %s", turn_id, exc_info=True)


class _Publisher:
    """One event loop on a thread of its own for the process's publishes, so that they share the
    layer's Redis connection: a loop (and a connection) made for each publish cost ten times the
    publish itself."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="parley-publisher").start()

    def send(self, publish: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(publish, self.loop)
        try:
            future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
        except BaseException:
            future.cancel()
            raise


_publisher_instance: _Publisher | None = None
_publisher_lock = threading.Lock()


def _publisher() -> _Publisher:
    """The process's publisher, made when first needed: a forked child (a Celery prefork worker)
    has no copy of its parent's thread, so it makes its own."""
    global _publisher_instance
    publisher = _publisher_instance
    if publisher is None or publisher.pid != os.getpid():
        with _publisher_lock:
            publisher = _publisher_instance
            if publisher is None or publisher.pid != os.getpid():
                publisher = _publisher_instance = _Publisher()
    return publisher


def _forget_publisher_after_fork() -> None:
    global _publisher_lock, _publisher_instance
    # The parent's lock may have been held by another of its threads at the fork.
    _publisher_lock, _publisher_instance = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_publisher_after_fork)


class TurnInbox:
    """A subscription to a turn's wake-ups: `async with TurnInbox(turn_id) as inbox`.

    A task of the inbox's own reads the layer; `receive` only waits on the inbox's small queue,
    so it returns within its timeout whatever the layer does. (Listeners that awaited the
    layer's receive themselves went silent when Redis was restarted under them: no event, no
    keep-alive, until well after their turns had ended.) A listener that is not reading (its
    client is slow) holds at most INBOX_MESSAGES messages: one that finds the queue full is
    dropped, and the listener reads the event store when it sees the gap.

    When the layer fails, the task subscribes again every RESUBSCRIBE_SECONDS until it works (a
    Redis restarted without its data has forgotten the group); until then `receive` times out
    and the listener reads the event store."""

    def __init__(self, turn_id: str) -> None:
        self.group = turn_group(turn_id)
        self.layer = get_channel_layer()
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=INBOX_MESSAGES)
        self._first_try_over = asyncio.Event()
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> TurnInbox:
        self._reader = asyncio.create_task(self._read_layer(), name=f"parley-inbox {self.group}")
        # Subscribed before the listener reads the store, so that what is stored next wakes it; a
        # layer that fails or does not answer soon is not waited for (the store is read anyway).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_try_over.wait(), timeout=SUBSCRIBE_WAIT_SECONDS)
        return self

    async def __aexit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._reader is not None:
            # Its unsubscribing is not waited for: the stream ends now, even with Redis away.
            self._reader.cancel()
            _background.add(self._reader)
            self._reader.add_done_callback(_background.discard)

    async def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None when `timeout` passes first."""
        try:
            return await asyncio.wait_for(self._messages.get(), timeout=timeout)
        except TimeoutError:
            return None

    async def _read_layer(self) -> None:
        channel: str | None = None
        subscribed = failing = False
        try:
            while True:
                try:
                    if not subscribed:
                        channel = channel or await self.layer.new_channel()
                        await self.layer.group_add(self.group, channel)
                        subscribed = True
                        self._first_try_over.set()
                        if failing:
                            logger.info("Channel layer back: %s is followed through it again", self.group)
                            failing = False
                    message = await self.layer.receive(channel)
                except Exception as exc:
                    # The store is read meanwhile; once the layer works the group is joined again.
                    if not failing:
                        logger.warning(
                            "Channel layer failed (%s): following %s through the event store until it "
                            "is back",
                            exc.__class__.__name__,
                            self.group,
                        )
                    failing, subscribed = True, False
                    self._first_try_over.set()
                    await asyncio.sleep(RESUBSCRIBE_SECONDS)
                    continue
                with contextlib.suppress(asyncio.QueueFull):
                    self._messages.put_nowait(message)
        finally:
            if channel is not None:
                await _discard_quietly(self.layer, self.group, channel)


async def _discard_quietly(layer: Any, group: str, channel: str) -> None:
    try:
        await layer.group_discard(group, channel)
    except Exception:  # the group's entry expires by itself
        logger.debug("group_discard failed for %s", group, exc_info=True)


async def wait_for_turn(turn_id: str, *, is_finished: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Wait until `is_finished()` is true or the timeout passes; True when it finished. A terminal
    event is published only once the turn's finish is committed, so it ends the wait at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with TurnInbox(turn_id) as inbox:
        while True:
            if await is_finished():
                return True
            while (remaining := deadline - loop.time()) > 0:
                message = await inbox.receive(min(remaining, RECHECK_SECONDS))
                if message is None:
                    break  # the layer may have lost it: read the database
                if any(event["kind"] in TERMINAL_KINDS for event in message["events"]):
                    return True
            else:
                return await is_finished()
