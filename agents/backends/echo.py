"""The built-in `echo` agent: deterministic and offline, for demos and tests.

What it answers, in order:
- after a `tool` message: a text answer quoting the tool's result;
- when the request forces a function (`tool_choice` naming it, or "required"), or with "auto"
  when the last user message names one of the tools: one call to that function whose
  arguments satisfy its `parameters` schema;
- otherwise text: "You said: <last user message>", the earlier user messages of the
  conversation it was given, and how many messages it saw.
It honours `n`, `stop`, `max_tokens`/`max_completion_tokens` (finish_reason "length"),
`response_format` (json_object, json_schema) and `logprobs`/`top_logprobs` (every token has
log-probability 0: the agent is certain). Sampling parameters have nothing to change in a
deterministic agent.

It streams its answer a word at a time. To simulate a real model, its configuration may set
`delay_seconds` (before the first token), `chunk_delay_seconds` (between tokens),
`pause_after_chunks` with `pause_seconds` (one long silence mid-answer), and `fail_after_chunks`
(raise after that many chunks, as a crashing model would); each delay is at most 60 s.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

from rest_framework import serializers

from agents.backends.base import AgentCall, ChoiceDelta, StreamItem, UsageReport, validated_config
from agents.schema_examples import example_for_schema
from agents.tokens import approx_prompt_tokens, approx_tokens, message_text

_EARLIER_SHOWN = 5
_MAX_DELAY_SECONDS = 60


class EchoFailure(RuntimeError):
    """The failure that `fail_after_chunks` simulates."""


class EchoConfigSerializer(serializers.Serializer):
    delay_seconds = serializers.FloatField(required=False, min_value=0, max_value=_MAX_DELAY_SECONDS)
    chunk_delay_seconds = serializers.FloatField(required=False, min_value=0, max_value=_MAX_DELAY_SECONDS)
    pause_after_chunks = serializers.IntegerField(required=False, min_value=1)
    pause_seconds = serializers.FloatField(required=False, min_value=0, max_value=_MAX_DELAY_SECONDS)
    fail_after_chunks = serializers.IntegerField(required=False, min_value=0)


class EchoBackend:
    def validate_config(self, config: dict, *, previous: dict) -> dict:
        return validated_config(EchoConfigSerializer, config)

    def public_config(self, config: dict) -> dict:
        return dict(config)

    def secrets(self, config: dict) -> list[str]:
        return []

    def stream(self, call: AgentCall) -> Iterator[StreamItem]:
        config = call.backend_config
        _sleep(config.get("delay_seconds"))
        params = call.params
        n = params.get("n") or 1
        pause_after = config.get("pause_after_chunks")
        fail_after = config.get("fail_after_chunks")
        count = 0
        for index in range(n):
            deltas, completion_tokens = _answer(call.messages, params)  # each choice its own call ids
            for delta in deltas:
                if fail_after is not None and count >= fail_after:
                    raise EchoFailure(f"echo agent failed after {count} chunks, as configured")
                yield ChoiceDelta(
                    index=index, delta=delta.delta, finish_reason=delta.finish_reason, logprobs=delta.logprobs
                )
                count += 1
                _sleep(
                    config.get("pause_seconds") if count == pause_after else config.get("chunk_delay_seconds")
                )
        yield UsageReport(
            prompt_tokens=approx_prompt_tokens(call.messages, params.get("tools")),
            completion_tokens=completion_tokens * n,
        )


def _sleep(seconds: float | None) -> None:
    if seconds:
        time.sleep(min(float(seconds), _MAX_DELAY_SECONDS))


def _answer(messages: list[dict], params: dict) -> tuple[list[ChoiceDelta], int]:
    """The deltas of one choice, and its completion tokens."""
    tool = _tool_to_call(messages, params.get("tools") or [], params.get("tool_choice"))
    if tool is not None:
        call = _tool_call(tool, _last_user_text(messages))
        arguments = call["function"]["arguments"]
        pieces = [arguments[i : i + 8] for i in range(0, len(arguments), 8)] or [""]
        head = {
            "index": 0,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        deltas = [ChoiceDelta(index=0, delta={"role": "assistant", "content": None, "tool_calls": [head]})]
        deltas += [
            ChoiceDelta(index=0, delta={"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in pieces
        ]
        deltas.append(ChoiceDelta(index=0, delta={}, finish_reason="tool_calls"))
        return deltas, approx_tokens(json.dumps([call]))
    content, finish_reason = _limit(_text_answer(messages, params), params)
    deltas = [ChoiceDelta(index=0, delta={"role": "assistant", "content": ""})]
    for token in _tokens(content):
        logprobs = _logprobs(token, params) if params.get("logprobs") else None
        deltas.append(ChoiceDelta(index=0, delta={"content": token}, logprobs=logprobs))
    deltas.append(ChoiceDelta(index=0, delta={}, finish_reason=finish_reason))
    return deltas, approx_tokens(content)


def _tokens(content: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", content)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message_text(message.get("content"))
    return ""


def _tool_to_call(messages: list[dict], tools: list[dict], tool_choice: Any) -> dict | None:
    if not tools or (messages and messages[-1]["role"] == "tool") or tool_choice == "none":
        return None
    if isinstance(tool_choice, dict):
        wanted = tool_choice["function"]["name"]
        return next(tool for tool in tools if tool["function"]["name"] == wanted)
    if tool_choice == "required":
        return tools[0]
    said = _last_user_text(messages).lower()
    for tool in tools:
        if re.search(rf"\b{re.escape(tool['function']['name'].lower())}\b", said):
            return tool
    return None


def _tool_call(tool: dict, text: str) -> dict:
    function = tool["function"]
    arguments = example_for_schema(function.get("parameters") or {"type": "object"}, text=text)
    return {
        "id": f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {"name": function["name"], "arguments": json.dumps(arguments)},
    }


def _text_answer(messages: list[dict], params: dict) -> str:
    if messages and messages[-1]["role"] == "tool":
        return _tool_result_answer(messages)
    last = _last_user_text(messages)
    response_format = (params.get("response_format") or {}).get("type", "text")
    if response_format == "json_schema":
        schema = params["response_format"]["json_schema"].get("schema") or {"type": "object"}
        return json.dumps(example_for_schema(schema, text=last))
    if response_format == "json_object":
        return json.dumps({"you_said": last, "messages_in_context": len(messages)})
    user_texts = [message_text(m.get("content")) for m in messages if m["role"] == "user"]
    lines = [f"You said: {last}"]
    if len(user_texts) > 1:
        earlier = user_texts[:-1][-_EARLIER_SHOWN:]
        lines.append("Earlier you said: " + " | ".join(f'"{text}"' for text in earlier))
    count = len(messages)
    lines.append(f"({count} message{'' if count == 1 else 's'} in context)")
    return "\n".join(lines)


def _tool_result_answer(messages: list[dict]) -> str:
    results = []
    for message in reversed(messages):
        if message["role"] != "tool":
            break
        results.append(message)
    names = {
        call["id"]: call["function"]["name"]
        for message in messages
        for call in message.get("tool_calls") or []
    }
    lines = []
    for message in reversed(results):
        name = names.get(message.get("tool_call_id")) or message.get("name") or "call"
        lines.append(f"The tool {name} returned: {message_text(message.get('content'))}")
    return "\n".join(lines)


def _limit(content: str, params: dict) -> tuple[str, str]:
    stops = params.get("stop")
    if isinstance(stops, str):
        stops = [stops]
    for stop in stops or []:
        content = content.split(stop, 1)[0]
    max_tokens = params.get("max_completion_tokens") or params.get("max_tokens")
    if max_tokens is not None and approx_tokens(content) > max_tokens:
        return content[: max_tokens * 4], "length"
    return content, "stop"


def _logprobs(token: str, params: dict) -> dict:
    entry = {"token": token, "logprob": 0.0, "bytes": list(token.encode())}
    entry["top_logprobs"] = [dict(entry)] if params.get("top_logprobs") else []
    return {"content": [entry], "refusal": None}
