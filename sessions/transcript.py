"""Which of a request's messages are new to the session's stored transcript.

OpenAI-style clients resend the whole conversation every time; session-aware clients send only
the new message. Both must leave each message stored once."""

from __future__ import annotations

import json
from typing import Any

from agents.tokens import message_text
from config.errors import InvalidRequest

_INSTRUCTION_ROLES = {"system", "developer"}


def _comparable(message: dict[str, Any]) -> tuple:
    calls = tuple(
        (call["function"]["name"], call["function"]["arguments"]) for call in message.get("tool_calls") or []
    )
    # Text parts and a plain string with the same text are the same message; ids of tool calls
    # are not compared because legacy function-calling clients don't send them back.
    content = message.get("content")
    if isinstance(content, list) and all(part.get("type") == "text" for part in content):
        content = message_text(content)
    if isinstance(content, list):
        content = json.dumps(content, sort_keys=True)
    return (
        message["role"],
        content or "",
        message.get("name") or "",
        calls,
        message.get("tool_call_id") or "",
    )


def _leading_instructions(messages: list[tuple]) -> int:
    count = 0
    while count < len(messages) and messages[count][0] in _INSTRUCTION_ROLES:
        count += 1
    return count


def unseen_messages(stored: list[dict[str, Any]], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The incoming messages that are not already in the stored transcript:
    - a request that starts with the whole stored transcript adds only what follows it;
    - leading system/developer messages identical to the stored ones are not added again;
    - messages that repeat the unanswered tail of the transcript (a retried failed turn) are
      not added again."""
    if not stored:
        return incoming
    known = [_comparable(m) for m in stored]
    fresh = [_comparable(m) for m in incoming]
    if fresh[: len(known)] == known:
        return incoming[len(known) :]
    lead = _leading_instructions(fresh)
    if lead and fresh[:lead] == known[:lead] and _leading_instructions(known) == lead:
        incoming, fresh = incoming[lead:], fresh[lead:]
    return _after_unanswered_tail(known, incoming, fresh)


def _after_unanswered_tail(known: list[tuple], incoming: list[dict[str, Any]], fresh: list[tuple]) -> list:
    last_answer = max((i for i, m in enumerate(known) if m[0] == "assistant"), default=-1)
    tail = known[last_answer + 1 :]
    if tail and fresh[: len(tail)] == tail:
        return incoming[len(tail) :]
    return incoming


def ends_needed(incoming: list[dict[str, Any]]) -> int:
    """How many messages of each end of the stored transcript `unseen_messages_at_ends` needs."""
    return len(incoming) + 1


def unseen_messages_at_ends(
    head: list[dict[str, Any]], tail: list[dict[str, Any]], incoming: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What `unseen_messages(stored, incoming)` answers, from the first and the last
    `ends_needed(incoming)` messages of a transcript longer than twice that: a request shorter
    than the transcript cannot start with all of it, its leading instructions are compared with
    the transcript's first ones, and an unanswered tail longer than the request cannot be
    repeated by it. So a turn reads a few messages, not the transcript."""
    needed = ends_needed(incoming)
    if len(head) != needed or len(tail) != needed:
        raise ValueError("unseen_messages_at_ends needs ends_needed(incoming) messages of each end")
    known_head = [_comparable(m) for m in head]
    fresh = [_comparable(m) for m in incoming]
    lead = _leading_instructions(fresh)
    if lead and fresh[:lead] == known_head[:lead] and _leading_instructions(known_head) == lead:
        incoming, fresh = incoming[lead:], fresh[lead:]
    known_tail = [_comparable(m) for m in tail]
    if not any(m[0] == "assistant" for m in known_tail):
        return incoming  # the unanswered tail is longer than the request
    return _after_unanswered_tail(known_tail, incoming, fresh)


def answer_open_tool_calls(
    stored: list[dict[str, Any]], incoming: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The incoming messages, checked: every `tool` message must answer a call that is open, in
    the stored transcript or earlier in the request (400 naming the message otherwise). A result
    from a client of the deprecated function calling, which names the function instead of the
    call, is matched to the open call of that function."""
    open_calls: dict[str, str] = {}
    for message in stored:
        _track(open_calls, message)
    checked = []
    for index, message in enumerate(incoming):
        if message["role"] == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls and message.get("name"):
                call_id = next((i for i, name in open_calls.items() if name == message["name"]), call_id)
            if call_id not in open_calls:
                raise InvalidRequest(
                    f"No open tool call has the id '{message.get('tool_call_id')}' in this conversation.",
                    param=f"messages[{index}].tool_call_id",
                    code="unknown_tool_call_id",
                )
            message = {**message, "tool_call_id": call_id}
        _track(open_calls, message)
        checked.append(message)
    return checked


def _track(open_calls: dict[str, str], message: dict[str, Any]) -> None:
    for call in message.get("tool_calls") or []:
        open_calls[call["id"]] = call["function"]["name"]
    if message["role"] == "tool":
        open_calls.pop(message.get("tool_call_id"), None)
