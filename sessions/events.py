"""Wake-ups through the Channels layer. The layer is at-most-once (channels_redis drops what
exceeds a channel's capacity), so it only wakes listeners and carries events as a shortcut:
the database stays the record, and listeners re-read it on a gap and on a timer."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# A listener re-reads the database at least this often, whatever the layer delivers.
RECHECK_SECONDS = 1.0
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


def turn_group(turn_id: str) -> str:
    return f"turn.{turn_id}"


def publish_turn_events(turn_id: str, events: list[TurnEvent]) -> None:
    """Hand new events to whoever listens to the turn. Never raises: a lost message only makes
    a listener read the database instead."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            turn_group(turn_id), {"type": "turn.events", "turn_id": turn_id, "events": events}
        )
    except Exception:
        logger.warning("Could not publish events of turn %s", turn_id, exc_info=True)


class TurnInbox:
    """A subscription to a turn's wake-ups: `async with TurnInbox(turn_id) as inbox`."""

    def __init__(self, turn_id: str) -> None:
        self.group = turn_group(turn_id)
        self.layer = get_channel_layer()
        self.channel: str | None = None

    async def __aenter__(self) -> TurnInbox:
        try:
            self.channel = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel)
        except Exception:
            logger.warning("Channel layer unavailable; following %s by polling", self.group, exc_info=True)
            self.channel = None
        return self

    async def __aexit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.channel is not None:
            try:
                await self.layer.group_discard(self.group, self.channel)
            except Exception:
                logger.debug("group_discard failed for %s", self.group, exc_info=True)

    async def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None when `timeout` passes first."""
        if self.channel is None:
            await asyncio.sleep(timeout)
            return None
        try:
            return await asyncio.wait_for(self.layer.receive(self.channel), timeout=timeout)
        except TimeoutError:
            return None
        except Exception:
            logger.debug("Channel layer receive failed", exc_info=True)
            await asyncio.sleep(timeout)
            return None


async def wait_for_turn(turn_id: str, *, is_finished: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Wait until `is_finished()` is true or the timeout passes; True when it finished."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with TurnInbox(turn_id) as inbox:
        while True:
            if await is_finished():
                return True
            while (remaining := deadline - loop.time()) > 0:
                message = await inbox.receive(min(remaining, RECHECK_SECONDS))
                if message is None or any(event["kind"] in TERMINAL_KINDS for event in message["events"]):
                    break
            else:
                return await is_finished()
