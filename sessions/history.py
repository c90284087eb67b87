"""The history window: what of a session's transcript an agent sees."""

from __future__ import annotations

from typing import Any

from agents.tokens import TOKENS_PER_MESSAGE, approx_tokens, message_text

INSTRUCTION_ROLES = {"system", "developer"}


def history_window(
    messages: list[dict[str, Any]], *, max_messages: int | None, max_tokens: int | None
) -> list[dict[str, Any]]:
    """The transcript's leading system/developer messages, then its most recent messages within
    `max_messages` and (approximately) `max_tokens`; the newest message is always kept. A window
    never starts with `tool` results whose assistant call was cut off."""
    if max_messages is None and max_tokens is None:
        return messages
    lead = 0
    while lead < len(messages) and messages[lead]["role"] in INSTRUCTION_ROLES:
        lead += 1
    return recent_window(messages[:lead], messages[lead:], max_messages=max_messages, max_tokens=max_tokens)


def recent_window(
    pinned: list[dict[str, Any]],
    rest: list[dict[str, Any]],
    *,
    max_messages: int | None,
    max_tokens: int | None,
) -> list[dict[str, Any]]:
    """`history_window` of a transcript split into its leading system/developer messages and
    the rest; `rest` may be only the last `window_bound` messages of it (the window is the same)."""
    budget = max_tokens if max_tokens is not None else float("inf")
    budget -= sum(_cost(message) for message in pinned)
    count_left = max_messages if max_messages is not None else len(rest)
    kept = 0
    for message in reversed(rest):
        cost = _cost(message)
        if kept and (kept >= count_left or cost > budget):
            break
        budget -= cost
        kept += 1
    window = rest[len(rest) - kept :]
    while len(window) > 1 and window[0]["role"] == "tool":
        window = window[1:]
    return pinned + window


def window_bound(*, max_messages: int | None, max_tokens: int | None) -> int | None:
    """How many of the transcript's last messages (after its leading instructions) a window can
    hold at most: every message costs at least TOKENS_PER_MESSAGE, and the newest is always kept.
    None when the window is the whole transcript."""
    if max_messages is None and max_tokens is None:
        return None
    bounds = []
    if max_messages is not None:
        bounds.append(max(max_messages, 1))
    if max_tokens is not None:
        bounds.append(max_tokens // TOKENS_PER_MESSAGE + 1)
    return min(bounds)


def _cost(message: dict[str, Any]) -> int:
    cost = TOKENS_PER_MESSAGE + approx_tokens(message_text(message.get("content")))
    for call in message.get("tool_calls") or []:
        cost += approx_tokens(call["function"]["name"] + call["function"]["arguments"])
    return cost
