"""The interface every agent backend implements.

A backend gets the conversation exactly as the agent should see it (the agent's system prompt,
the session's transcript, the new messages) plus the request's parameters, and streams its answer
as OpenAI chunk deltas: `ChoiceDelta`s (role, content, tool-call fragments with their `index`,
`id` and `function.name`) and, at the end, a `UsageReport`. Streamed or not, every turn runs
this one way; the turn runner (sessions/runner.py) stores and relays what the backend yields.
Backends never touch the database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from rest_framework import serializers

from agents.egress import EgressRefused, check_url
from agents.secrets import is_sealed, seal


@dataclass(frozen=True)
class AgentCall:
    messages: list[dict[str, Any]]
    params: dict[str, Any]  # the request's parameters over the agent's defaults; `tools` included
    backend_config: dict[str, Any] = field(default_factory=dict)
    # Who is asking: {"agent": slug, "session_id": ..., "turn_id": ..., "organization": slug}
    context: dict[str, Any] = field(default_factory=dict)
    # Set when the turn no longer wants the answer (cancelled, taken over, ended): a backend
    # waiting on the network gives up at once (agents.bounds.outbound_bounds).
    stop: threading.Event = field(default_factory=threading.Event)


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

    def secrets(self, config: dict[str, Any]) -> list[str]:
        """The secrets that calls with this configuration send out (an API key, a signing
        secret), in clear: what agents.redaction removes from the backend's errors."""
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


def validated_config_with_secret(
    serializer_class: type[serializers.Serializer],
    config: Any,
    *,
    previous: dict[str, Any],
    write_only_field: str,
    url_field: str,
) -> dict[str, Any]:
    """Validate a configuration that holds one write-only secret and one outbound URL: the
    secret is stored sealed; an update that leaves it out (or sends back what public_config
    showed) keeps the stored one; the URL must pass the egress guard."""
    if not isinstance(config, dict):
        raise serializers.ValidationError("Expected a JSON object.")
    config = {key: value for key, value in config.items() if key != f"{write_only_field}_set"}
    secret = config.get(write_only_field)
    if is_sealed(secret):
        del config[write_only_field]
    validated = validated_config(serializer_class, config)
    try:
        check_url(validated[url_field])
    except EgressRefused as refused:
        raise serializers.ValidationError({url_field: [refused.message]}) from None
    validated.pop(write_only_field, None)
    if secret and not is_sealed(secret):
        validated[write_only_field] = seal(secret)
    elif is_sealed(previous.get(write_only_field)):
        validated[write_only_field] = previous[write_only_field]
    return validated


def public_config_without(config: dict[str, Any], write_only_field: str) -> dict[str, Any]:
    """A configuration as APIs show it: the secret replaced by whether one is set."""
    public = {key: value for key, value in config.items() if key != write_only_field}
    public[f"{write_only_field}_set"] = write_only_field in config
    return public
