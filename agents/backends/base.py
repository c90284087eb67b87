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

from rest_framework import serializers


@dataclass(frozen=True)
class AgentCall:
    messages: list[dict[str, Any]]
    params: dict[str, Any]  # the request's parameters over the agent's defaults; `tools` included
    backend_config: dict[str, Any] = field(default_factory=dict)
    # Who is asking: {"agent": slug, "session_id": ..., "turn_id": ..., "organization": slug}
    context: dict[str, Any] = field(default_factory=dict)


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

    def validate_config(self, config: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
        """The configuration to store, with secrets sealed (agents.secrets), or a DRF
        ValidationError keyed by field. `previous` is the stored configuration: a secret that
        an update leaves out is kept."""
        ...

    def public_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The configuration as APIs and pages may show it: without any secret."""
        ...


def validated_config(serializer_class: type[serializers.Serializer], config: Any) -> dict[str, Any]:
    """Validate a backend configuration with a DRF serializer; unknown keys are refused (a typo
    in a configuration should not pass silently)."""
    if not isinstance(config, dict):
        raise serializers.ValidationError("Expected a JSON object.")
    unknown = sorted(set(config) - set(serializer_class().fields))
    if unknown:
        raise serializers.ValidationError({key: ["Unknown setting."] for key in unknown})
    serializer = serializer_class(data=config)
    serializer.is_valid(raise_exception=True)
    return {key: value for key, value in serializer.validated_data.items() if value is not None}
