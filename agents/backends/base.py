"""The interface every agent backend implements.

A backend gets the conversation exactly as the agent should see it (the agent's system prompt,
the session's transcript, the new messages) plus the request's parameters, and answers with one
or more choices in OpenAI's message shape. Backends never touch the database: the turn runner
(sessions.turns) stores what they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class AgentCall:
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    backend_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentChoice:
    message: dict[str, Any]  # {"role": "assistant", "content": ..., "tool_calls": [...]}
    finish_reason: str  # stop | length | tool_calls | content_filter
    logprobs: dict[str, Any] | None = None


@dataclass(frozen=True)
class AgentReply:
    choices: list[AgentChoice]
    prompt_tokens: int
    completion_tokens: int


class AgentBackend(Protocol):
    def reply(self, call: AgentCall) -> AgentReply: ...
