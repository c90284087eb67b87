"""The shapes Parley answers in: OpenAI's chat.completion, and sessions as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sessions.chunks import SYSTEM_FINGERPRINT, completion_id, usage_with_details
from sessions.models import Message, Session, Turn


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
        "user": session.end_user or None,
        "message_count": session.message_count,
        "created": int(session.created.timestamp()),
        "updated": int(session.updated.timestamp()),
    }
    if messages is not None:
        payload["messages"] = [message_payload(message) for message in messages]
    return payload


def _milliseconds_between(start: Any, end: Any) -> int | None:
    return round((end - start).total_seconds() * 1000) if start and end else None


def turn_export_payload(turn: Turn) -> dict[str, Any]:
    """A turn as an export shows it: where it stands, what it used and how long it took."""

    def stamp(moment: Any) -> float | None:
        return round(moment.timestamp(), 3) if moment else None

    return {
        "id": turn.id,
        "position": turn.position,
        "status": turn.status,
        "model": turn.model,
        "usage": turn.usage,
        "error": (turn.error or {}).get("error"),
        "timings": {
            "queued_at": stamp(turn.queued_at),
            "started_at": stamp(turn.started_at),
            "first_token_at": stamp(turn.first_token_at),
            "finished_at": stamp(turn.finished_at),
            "queue_ms": _milliseconds_between(turn.queued_at, turn.started_at),
            "time_to_first_token_ms": _milliseconds_between(turn.started_at, turn.first_token_at),
            "duration_ms": _milliseconds_between(turn.started_at, turn.finished_at),
        },
    }


def session_export(
    session: Session, messages: list[Message], turns: list[Turn], *, exported_at: datetime
) -> dict[str, Any]:
    """GET /v1/sessions/{id}/export: the session, its whole transcript and its turns."""
    return {
        "object": "session.export",
        "exported_at": int(exported_at.timestamp()),
        "session": session_payload(session) | {"turn_count": session.turn_count},
        "messages": [message_payload(message) for message in messages],
        "turns": [turn_export_payload(turn) for turn in turns],
    }
