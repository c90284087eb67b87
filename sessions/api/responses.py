"""The shapes Parley answers in: OpenAI's chat.completion, and sessions as the API shows them."""

from __future__ import annotations

from typing import Any

from sessions.models import Message, Session, Turn
from sessions.streaming import SYSTEM_FINGERPRINT, completion_id, usage_with_details


def chat_completion(turn: Turn) -> dict[str, Any]:
    legacy = turn.params.get("legacy_function_call", False)
    usage = turn.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        "id": completion_id(turn),
        "object": "chat.completion",
        "created": int(turn.queued_at.timestamp()),
        "model": turn.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "service_tier": "default",
        "choices": [_choice(choice, legacy) for choice in turn.output["choices"]],
        "usage": usage_with_details(usage),
        "session_id": turn.session.external_id if turn.session_id else None,
    }


def _choice(choice: dict[str, Any], legacy: bool) -> dict[str, Any]:
    stored = choice["message"]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": stored.get("content"),
        "refusal": stored.get("refusal"),
        "annotations": [],
    }
    finish_reason = choice["finish_reason"]
    calls = stored.get("tool_calls")
    if calls and legacy:  # a client of the deprecated `functions` gets `function_call` back
        message["function_call"] = calls[0]["function"]
        finish_reason = "function_call"
    elif calls:
        message["tool_calls"] = calls
    return {
        "index": choice["index"],
        "message": message,
        "logprobs": choice.get("logprobs"),
        "finish_reason": finish_reason,
    }


def turn_payload(turn: Turn) -> dict[str, Any]:
    def stamp(moment: Any) -> int | None:
        return int(moment.timestamp()) if moment else None

    return {
        "id": turn.id,
        "object": "turn",
        "session_id": turn.session.external_id if turn.session_id else None,
        "model": turn.model,
        "status": turn.status,
        "created": stamp(turn.queued_at),
        "started_at": stamp(turn.started_at),
        "finished_at": stamp(turn.finished_at),
        "usage": turn.usage,
        "error": (turn.error or {}).get("error"),
    }


def message_payload(message: Message) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "name": message.name or None,
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id or None,
        "turn_id": message.turn_id,
        "created": int(message.created.timestamp()),
    }


def session_payload(session: Session, messages: list[Message] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": session.external_id,
        "object": "session",
        "agent": session.agent.slug if session.agent else None,
        "title": session.title,
        "metadata": session.metadata,
        "message_count": session.message_count,
        "created": int(session.created.timestamp()),
        "updated": int(session.updated.timestamp()),
    }
    if messages is not None:
        payload["messages"] = [message_payload(message) for message in messages]
    return payload
