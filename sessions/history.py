"""The history window: what of a session's transcript an agent sees."""

from __future__ import annotations

from typing import Any

from agents.tokens import TOKENS_PER_MESSAGE, approx_tokens, message_text

_INSTRUCTION_ROLES = {"system", "developer"}


def history_window(
    messages: list[dict[str, Any]], *, max_messages: int | None, max_tokens: int | None
) -> list[dict[str, Any]]:
    """The transcript's leading system/developer messages, then its most recent messages within
    `max_messages` and (approximately) `max_tokens`; the newest message is always kept. A window
    never starts with `tool` results whose assistant call was cut off."""
    if max_messages is None and max_tokens is None:
        return messages
    lead = 0
    while lead < len(messages) and messages[lead]["role"] in _INSTRUCTION_ROLES:
        lead += 1
    pinned, rest = messages[:lead], messages[lead:]
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


def _cost(message: dict[str, Any]) -> int:
    cost = TOKENS_PER_MESSAGE + approx_tokens(message_text(message.get("content")))
    for call in message.get("tool_calls") or []:
        cost += approx_tokens(call["function"]["name"] + call["function"]["arguments"])
    return cost
