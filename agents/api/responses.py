"""Output of the Agents API: an agent as clients see it, secrets left out."""

from __future__ import annotations

from typing import Any

from agents.backends import backend_for
from agents.models import Agent
from agents.tools import public_tools_config


def agent_payload(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.slug,
        "object": "agent",
        "name": agent.name,
        "backend": agent.backend,
        "backend_config": backend_for(agent.backend).public_config(agent.backend_config),
        "system_prompt": agent.system_prompt,
        "default_params": agent.default_params,
        "tools": public_tools_config(agent.tools),
        "max_tool_steps": agent.max_tool_steps,
        "history_max_messages": agent.history_max_messages,
        "history_max_tokens": agent.history_max_tokens,
        "enabled": agent.enabled,
        "created": int(agent.created.timestamp()),
        "updated": int(agent.updated.timestamp()),
    }
