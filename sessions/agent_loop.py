"""One turn of an agent with server-side tools: model -> the server tools it calls -> model, at
most the agent's `max_tool_steps` rounds. It runs on the agent's thread (sessions.streaming.pump)
and touches no database: it yields what the client sees (ChoiceDelta, UsageReport), the tool
steps for clients that asked to see them (ToolStep), and every message to store in the session
(StoredMessage), in order.

What the client sees is one answer: the text of every step, and the calls to the client's own
tools, re-indexed from 0 if server calls were taken out of the same message. The calls to server
tools and their results are stored in the transcript, and shown only as tool steps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from agents.backends.base import AgentBackend, AgentCall, ChoiceDelta, StreamItem, UsageReport
from agents.tools import execute_tool_call
from agents.tools.base import ServerTool, ToolContext
from config.inputs import storable
from sessions.streaming import ReplyAccumulator


@dataclass(frozen=True)
class ToolStep:
    payload: dict[str, Any]  # {"type": "tool_call" | "tool_result", "tool_call_id", "name", ...}


@dataclass(frozen=True)
class StoredMessage:
    message: dict[str, Any]


LoopItem = StreamItem | ToolStep | StoredMessage


def step_limit_note(steps: int) -> str:
    return f"[Parley stopped this answer: the agent asked for more than {steps} rounds of tool calls.]"


def run_agent_loop(
    backend: AgentBackend,
    call: AgentCall,
    *,
    server_tools: dict[str, ServerTool],
    max_steps: int,
    context: ToolContext,
) -> Iterator[LoopItem]:
    client_tools = call.params.get("tools") or []
    client_names = {tool["function"]["name"] for tool in client_tools}
    # A client tool of the same name wins: the client asked for it.
    server_tools = {name: tool for name, tool in server_tools.items() if name not in client_names}
    tools = client_tools + [tool.definition() for tool in server_tools.values()]
    params = {**call.params, "tools": tools} if tools else call.params
    messages = list(call.messages)
    prompt_tokens = completion_tokens = 0
    role_sent: set[int] = set()
    for step in range(max_steps + 1):
        relay = _StepRelay(server_tools, role_sent)
        for item in backend.stream(replace(call, messages=messages, params=params)):
            if isinstance(item, ChoiceDelta):
                item = replace(item, delta=storable(item.delta), logprobs=storable(item.logprobs))
            if isinstance(item, UsageReport):
                prompt_tokens += item.prompt_tokens
                completion_tokens += item.completion_tokens
                continue
            visible = relay.add(item)
            if visible is not None:
                yield visible
        message = relay.message()
        server_calls = [c for c in message.get("tool_calls") or [] if c["function"]["name"] in server_tools]
        if not server_calls:
            yield StoredMessage(message)
            break
        if step == max_steps:
            note = step_limit_note(max_steps)
            stopped = {"role": "assistant", "content": _joined(message.get("content"), note)}
            client_calls = [c for c in message.get("tool_calls") or [] if c not in server_calls]
            if client_calls:
                # The client already has its calls and finish_reason "tool_calls": keep those
                # calls open for its `tool` messages and drop only the server calls.
                stopped["tool_calls"] = client_calls
            else:
                yield ChoiceDelta(index=0, delta={"content": note}, finish_reason="stop")
            yield StoredMessage(stopped)
            break
        yield StoredMessage(message)
        messages.append(message)
        for tool_call in server_calls:
            name, call_id = tool_call["function"]["name"], tool_call["id"]
            yield ToolStep(
                {
                    "type": "tool_call",
                    "tool_call_id": call_id,
                    "name": name,
                    "arguments": tool_call["function"]["arguments"],
                }
            )
            result = storable(execute_tool_call(server_tools, tool_call, context))
            tool_message = {"role": "tool", "tool_call_id": call_id, "content": result}
            yield ToolStep({"type": "tool_result", "tool_call_id": call_id, "name": name, "content": result})
            yield StoredMessage(tool_message)
            messages.append(tool_message)
        if relay.client_calls:
            break  # the client runs its own calls, then continues with `tool` messages
    yield UsageReport(prompt_tokens, completion_tokens)


def _joined(content: str | None, note: str) -> str:
    return f"{content}\n{note}" if content else note


class _StepRelay:
    """Filters one model call's deltas for the client: the role once per turn, no fragments of
    server tool calls, client calls re-indexed, no finish_reason while server tools still run."""

    def __init__(self, server_tools: dict[str, ServerTool], role_sent: set[int]) -> None:
        self.server_tools = server_tools
        self.role_sent = role_sent
        self.reply = ReplyAccumulator()
        self.hidden: set[int] = set()
        self.shown: dict[int, int] = {}

    @property
    def client_calls(self) -> bool:
        return bool(self.shown)

    def add(self, item: ChoiceDelta) -> ChoiceDelta | None:
        self.reply.add(item)
        delta = dict(item.delta)
        if "role" in delta:
            if item.index in self.role_sent:
                del delta["role"]
            else:
                self.role_sent.add(item.index)
        if "tool_calls" in delta:
            fragments = [self._visible(fragment) for fragment in delta.pop("tool_calls")]
            fragments = [fragment for fragment in fragments if fragment is not None]
            if fragments:
                delta["tool_calls"] = fragments
        finish_reason = item.finish_reason
        if finish_reason == "tool_calls" and not self.shown:
            finish_reason = None  # only server calls: the answer goes on after them
        if not delta and finish_reason is None and item.logprobs is None:
            return None
        return ChoiceDelta(index=item.index, delta=delta, finish_reason=finish_reason, logprobs=item.logprobs)

    def _visible(self, fragment: dict[str, Any]) -> dict[str, Any] | None:
        index = fragment.get("index", 0)
        if index not in self.hidden and index not in self.shown:
            name = (fragment.get("function") or {}).get("name")
            if name in self.server_tools:
                self.hidden.add(index)
            else:
                self.shown[index] = len(self.shown)
        if index in self.hidden:
            return None
        return {**fragment, "index": self.shown[index]}

    def message(self) -> dict[str, Any]:
        return (
            self.reply.choices()[0]["message"]
            if self.reply.choices()
            else {"role": "assistant", "content": ""}
        )
