"""Agent backends: one module per backend, one interface (base.AgentBackend)."""

from __future__ import annotations

from agents.backends.base import AgentBackend
from agents.backends.echo import EchoBackend
from agents.backends.openai import OpenAIBackend
from agents.backends.webhook import WebhookBackend

BACKENDS: dict[str, AgentBackend] = {
    "echo": EchoBackend(),
    "openai": OpenAIBackend(),
    "webhook": WebhookBackend(),
}


def backend_for(name: str) -> AgentBackend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise LookupError(f"Unknown agent backend {name!r}.") from None
