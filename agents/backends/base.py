"""The interface every agent backend implements.

A backend gets the conversation exactly as the agent should see it (the agent's system prompt,
the session's transcript, the new messages) plus the request's parameters, and streams its answer
as OpenAI chunk deltas: `ChoiceDelta`s (role, content, tool-call fragments with their `index`,
`id` and `function.name`) and, at the end, a `UsageReport`. Streamed or not, every turn runs
this one way; the turn runner (sessions.turns) stores and relays what the backend yields.
Backends never touch the database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class AgentCall:
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    backend_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChoiceDelta:
    index: int
    delta: dict[str, Any]  # OpenAI's choices[].delta: role, content, refusal, tool_calls fragments
    finish_reason: str | None = None  # set on the last delta of a choice
    logprobs: dict[str, Any] | None = None


@dataclass(frozen=True)
class UsageReport:
    prompt_tokens: int
    completion_tokens: int


StreamItem = ChoiceDelta | UsageReport


class AgentBackend(Protocol):
    def stream(self, call: AgentCall) -> Iterator[StreamItem]: ...
