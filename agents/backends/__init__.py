"""Agent backends: one module per backend, one interface (base.AgentBackend)."""

from __future__ import annotations

from agents.backends.base import AgentBackend
from agents.backends.echo import EchoBackend

_BACKENDS: dict[str, AgentBackend] = {"echo": EchoBackend()}


def backend_for(name: str) -> AgentBackend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise LookupError(f"Unknown agent backend {name!r}.") from None
