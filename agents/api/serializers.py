"""Input of the Agents API: JSON types and ranges. The rules that need the registry or the
stored agent (backend names, backend configuration, tools, unique slugs) are the services'."""

from __future__ import annotations

import copy
import json
from typing import Any

from django.core.validators import validate_slug
from rest_framework import serializers

from config.inputs import refuse_unknown_fields
from sessions.api.chat_serializers import ChatCompletionRequestSerializer
from sessions.api.fields import (
    JsonObjectField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictListField,
)

# The chat request parameters an agent may set as defaults; a request's own values win.
DEFAULT_PARAM_NAMES = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
    "logit_bias",
    "n",
    "logprobs",
    "top_logprobs",
)
# Fields of the agent as the API shows it that a client cannot set: sending a GET answer back
# in a PATCH is harmless, they are ignored.
READ_ONLY_NAMES = frozenset({"id", "object", "created", "updated"})
_DATABASE_INT_MAX = 2_147_483_647


def _default_params_serializer() -> type[serializers.Serializer]:
    """A serializer of the chat request's own field definitions (copies: a field belongs to one
    serializer), so that a default is valid exactly when the same value in a request is."""
    chat_fields = ChatCompletionRequestSerializer().fields
    attrs: dict[str, Any] = {name: copy.deepcopy(chat_fields[name]) for name in DEFAULT_PARAM_NAMES}
    attrs["validate_logit_bias"] = ChatCompletionRequestSerializer.validate_logit_bias
    return type("DefaultParamsSerializer", (serializers.Serializer,), attrs)


DefaultParamsSerializer = _default_params_serializer()


class DefaultParamsField(serializers.Field):
    default_error_messages = {"invalid": "Expected a JSON object."}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("invalid")
        unknown = sorted(set(data) - set(DEFAULT_PARAM_NAMES))
        if unknown:
            raise serializers.ValidationError(
                {key: ["Not a parameter an agent may set a default for."] for key in unknown}
            )
        serializer = DefaultParamsSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data.get("top_logprobs") is not None and not serializer.validated_data.get(
            "logprobs"
        ):
            raise serializers.ValidationError({"top_logprobs": ["top_logprobs needs logprobs to be true."]})
        # A null default would reach the backend as a parameter: it means "no default" instead.
        params = {key: value for key, value in serializer.validated_data.items() if value is not None}
        return json.loads(json.dumps(params))  # plain JSON values, as stored

    def to_representation(self, value: Any) -> Any:
        return value


class AgentInputSerializer(serializers.Serializer):
    """POST's body; PATCH's with partial=True. Unknown fields are refused, not ignored: a typo in
    an agent's configuration should not pass silently, and neither should `organization`."""

    slug = StrictCharField(max_length=64, validators=[validate_slug])
    name = StrictCharField(required=False, max_length=200)  # the slug when left out
    backend = StrictCharField(max_length=32)
    backend_config = JsonObjectField(required=False)
    system_prompt = StrictCharField(required=False, allow_blank=True)
    default_params = DefaultParamsField(required=False)
    tools = StrictListField(child=JsonObjectField(), required=False, max_length=128)
    max_tool_steps = StrictIntegerField(required=False, min_value=1, max_value=20)
    history_max_messages = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=_DATABASE_INT_MAX
    )
    history_max_tokens = StrictIntegerField(
        required=False, allow_null=True, min_value=1, max_value=_DATABASE_INT_MAX
    )
    enabled = StrictBooleanField(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        data = refuse_unknown_fields(data, known=self.fields, ignored=READ_ONLY_NAMES)
        return super().to_internal_value(data)
