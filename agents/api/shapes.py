"""What the Agents and Models APIs answer: each object's one serializer renders it and, through
drf-spectacular, documents it. Secrets are never part of a shape."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.backends import backend_for
from agents.models import Agent
from agents.tools import public_tools_config
from config.shapes import Constant, UnixTime, deleted_shape, list_envelope, nullable_int


# An enabled agent, as OpenAI's model object (GET /v1/models).
class ModelSerializer(serializers.Serializer):
    id = serializers.CharField(
        source="slug", help_text="The agent's slug: the `model` of a chat completion request."
    )
    object = Constant("model")
    created = UnixTime()
    owned_by = serializers.CharField(source="organization.slug", help_text="The organization's slug.")


class _PublicBackendConfig(serializers.DictField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def to_representation(self, agent: Agent) -> dict[str, Any]:
        return backend_for(agent.backend).public_config(agent.backend_config)


class _PublicTools(serializers.ListField):
    def to_representation(self, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return public_tools_config(tools)


class AgentSerializer(serializers.Serializer):
    id = serializers.CharField(
        source="slug", help_text="The slug: the `model` name of chat completion requests."
    )
    object = Constant("agent")
    name = serializers.CharField()
    backend = serializers.CharField(help_text="`echo`, `openai` or `webhook`.")
    backend_config = _PublicBackendConfig(help_text="The backend's settings; secrets are never shown.")
    system_prompt = serializers.CharField(allow_blank=True)
    default_params = serializers.DictField(help_text="Chat parameters used when a request leaves them out.")
    tools = _PublicTools(child=serializers.DictField(), help_text="Server-side tools.")
    max_tool_steps = serializers.IntegerField()
    history_max_messages = nullable_int()
    history_max_tokens = nullable_int()
    enabled = serializers.BooleanField()
    created = UnixTime()
    updated = UnixTime()


ModelListSerializer = list_envelope("ModelList", ModelSerializer)
AgentListSerializer = list_envelope("AgentList", AgentSerializer)
AgentDeletedSerializer = deleted_shape("AgentDeleted", "agent.deleted", serializers.CharField())
