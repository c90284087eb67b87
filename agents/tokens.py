"""Token counts by a documented approximation: about four characters a token, plus a few
tokens of framing per message (the same order as OpenAI's chat format)."""

from __future__ import annotations

import json
import math
from typing import Any

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


def approx_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def message_text(content: Any) -> str:
    """The text of a message's content, whether a string or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append(part.get("text", ""))
        elif kind == "refusal":
            parts.append(part.get("refusal", ""))
        else:
            parts.append(f"[{kind}]")
    return "\n".join(parts)


def approx_prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + approx_tokens(message_text(message.get("content")))
        if message.get("tool_calls"):
            total += approx_tokens(json.dumps(message["tool_calls"]))
    if tools:
        total += approx_tokens(json.dumps(tools))
    return total
