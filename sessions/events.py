"""Wake-ups through the Channels layer. The layer is at-most-once, so it only wakes listeners:
the database stays the record, and listeners re-read it (also on a timer)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# A listener re-reads the database at least this often, whatever the layer delivers.
RECHECK_SECONDS = 1.0


def turn_group(turn_id: str) -> str:
    return f"turn.{turn_id}"


def publish_turn_finished(turn_id: str) -> None:
    """Wake whoever waits for this turn. Never raises: a lost wake-up only delays a listener."""
    try:
        async_to_sync(get_channel_layer().group_send)(
            turn_group(turn_id), {"type": "turn.finished", "turn_id": turn_id}
        )
    except Exception:
        logger.warning("Could not publish the end of turn %s", turn_id, exc_info=True)


async def wait_for_turn(turn_id: str, *, is_finished: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Wait until `is_finished()` is true or the timeout passes; True when it finished."""
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channel = None
    try:
        channel = await layer.new_channel()
        await layer.group_add(turn_group(turn_id), channel)
    except Exception:
        logger.warning("Channel layer unavailable; waiting for turn %s by polling", turn_id, exc_info=True)
        channel = None
    try:
        while True:
            if await is_finished():
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await _next_wakeup(layer, channel, min(remaining, RECHECK_SECONDS))
    finally:
        if channel is not None:
            try:
                await layer.group_discard(turn_group(turn_id), channel)
            except Exception:
                logger.debug("group_discard failed for %s", turn_id, exc_info=True)


async def _next_wakeup(layer, channel: str | None, timeout: float) -> None:
    if channel is None:
        await asyncio.sleep(timeout)
        return
    try:
        await asyncio.wait_for(layer.receive(channel), timeout=timeout)
    except TimeoutError:
        pass
    except Exception:
        logger.debug("Channel layer receive failed", exc_info=True)
        await asyncio.sleep(timeout)
