"""The OpenAI `chat.completion.chunk`s of a turn, made from what the agent yields, and the
complete answer assembled back from the deltas (ReplyAccumulator)."""

from __future__ import annotations

from typing import Any

from agents.backends.base import ChoiceDelta, StreamItem, UsageReport
from sessions.models import Turn

SYSTEM_FINGERPRINT = "fp_parley_0_1"


def completion_id(turn: Turn) -> str:
    return "chatcmpl-" + turn.id.removeprefix("turn_")


def completion_header(turn: Turn, object_type: str) -> dict[str, Any]:
    """The fields a turn's chat completion and each of its chunks begin with."""
    return {
        "id": completion_id(turn),
        "object": object_type,
        "created": int(turn.queued_at.timestamp()),
        "model": turn.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def chunk_base(turn: Turn, session_external_id: str | None) -> dict[str, Any]:
    """What every chunk of a turn shares."""
    return {
        **completion_header(turn, "chat.completion.chunk"),
        "session_id": session_external_id,
        "turn_id": turn.id,
    }


def delta_chunk(base: dict[str, Any], item: ChoiceDelta, *, legacy_functions: bool) -> dict[str, Any]:
    delta, finish_reason = item.delta, item.finish_reason
    if legacy_functions:  # clients of the deprecated `functions` get `function_call` deltas
        delta = dict(delta)
        calls = delta.pop("tool_calls", None)
        if calls:
            delta["function_call"] = {k: v for k, v in calls[0].get("function", {}).items() if v is not None}
        if finish_reason == "tool_calls":
            finish_reason = "function_call"
    choice = {"index": item.index, "delta": delta, "logprobs": item.logprobs, "finish_reason": finish_reason}
    return {**base, "choices": [choice]}


def tool_step_chunk(base: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """A server-side tool step for clients that asked for them (stream_options.include_tool_steps):
    an ordinary chunk with an empty delta, so that OpenAI clients pass over it, and the step in
    the extension field `tool_step`."""
    return {
        **base,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": None}],
        "tool_step": step,
    }


def usage_payload(usage: UsageReport | None) -> dict[str, Any]:
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def usage_with_details(usage: dict[str, Any]) -> dict[str, Any]:
    """Usage as OpenAI shows it, with the breakdowns Parley has nothing to report in."""
    return {
        **usage,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def usage_chunk(base: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    return {**base, "choices": [], "usage": usage_with_details(usage)}


class ReplyAccumulator:
    """Builds the complete answer (every choice's message) from the stream's deltas, the way the
    OpenAI SDK assembles a stream: strings concatenated, tool calls joined by their index."""

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}
        self.usage: UsageReport | None = None
        self.started_output = False

    def add(self, item: StreamItem) -> None:
        if isinstance(item, UsageReport):
            self.usage = item
            return
        choice = self._choices.setdefault(
            item.index,
            {"content": None, "refusal": None, "calls": {}, "finish_reason": None, "logprobs": None},
        )
        delta = item.delta
        for key in ("content", "refusal"):
            if delta.get(key):
                choice[key] = (choice[key] or "") + delta[key]
                self.started_output = True
            elif delta.get(key) == "" and choice[key] is None:
                choice[key] = ""
        for fragment in delta.get("tool_calls") or []:
            self.started_output = True
            call = choice["calls"].setdefault(
                fragment.get("index", 0),
                {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
            )
            call["id"] += fragment.get("id") or ""
            function = fragment.get("function") or {}
            call["function"]["name"] += function.get("name") or ""
            call["function"]["arguments"] += function.get("arguments") or ""
        if item.logprobs:
            if choice["logprobs"] is None:
                choice["logprobs"] = {"content": [], "refusal": None}
            choice["logprobs"]["content"] += item.logprobs.get("content") or []
        if item.finish_reason:
            choice["finish_reason"] = item.finish_reason

    def choices(self, *, complete_calls_only: bool = False) -> list[dict[str, Any]]:
        result = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": choice["content"]}
            if choice["refusal"]:
                message["refusal"] = choice["refusal"]
            if choice["calls"] and not complete_calls_only:
                message["tool_calls"] = [choice["calls"][key] for key in sorted(choice["calls"])]
            result.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": choice["finish_reason"] or "stop",
                    "logprobs": choice["logprobs"],
                }
            )
        return result
