"""Validation of a chat completion request: every field OpenAI defines, with OpenAI's types and
ranges, plus Parley's `session_id`. Unknown fields are ignored, as OpenAI does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework import serializers

from config.errors import InvalidRequest, validation_error
from config.inputs import json_body_parse
from sessions.api.fields import (
    ChatMetadataField,
    JsonObjectField,
    OneOfField,
    StrictBooleanField,
    StrictCharField,
    StrictDictField,
    StrictFloatField,
    StrictIntegerField,
)
from sessions.api.message_serializers import MessageSerializer, function_name_validator, nullable_list
from sessions.ids import SESSION_ID_PATTERN
from sessions.submission import TurnRequest

# A logit_bias key: a token id, in ASCII digits (str.isdigit would let "²" through).
TOKEN_ID = re.compile(r"-?[0-9]+")
MAX_TOOLS = 128  # tools per request, as OpenAI allows


class FunctionDefinitionSerializer(serializers.Serializer):
    name = StrictCharField(validators=[function_name_validator])
    description = StrictCharField(required=False, allow_blank=True)
    parameters = JsonObjectField(required=False)
    strict = StrictBooleanField(required=False, allow_null=True)


class ToolSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["function"])
    function = FunctionDefinitionSerializer()


class NamedFunctionSerializer(serializers.Serializer):
    name = StrictCharField()


class NamedToolChoiceSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["function"])
    function = NamedFunctionSerializer()


class JsonSchemaFormatSerializer(serializers.Serializer):
    name = StrictCharField(validators=[function_name_validator])
    description = StrictCharField(required=False, allow_blank=True)
    schema = JsonObjectField(required=False)
    strict = StrictBooleanField(required=False, allow_null=True)


class ResponseFormatSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["text", "json_object", "json_schema"])
    json_schema = JsonSchemaFormatSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["type"] == "json_schema" and "json_schema" not in attrs:
            raise serializers.ValidationError(
                {"json_schema": [serializers.ErrorDetail("This field is required.", code="required")]}
            )
        return attrs


class StreamOptionsSerializer(serializers.Serializer):
    include_usage = StrictBooleanField(
        required=False, help_text="A final chunk, with empty `choices`, carries `usage`."
    )
    # Parley's extension: show server-side tool steps in the stream.
    include_tool_steps = StrictBooleanField(
        required=False,
        help_text="Parley: server-side tool steps stream as chunks with an empty delta and a "
        "`tool_step` field.",
    )


class StopField(serializers.Field):
    def to_internal_value(self, data: Any) -> str | list[str]:
        if isinstance(data, str):
            return data
        if isinstance(data, list) and len(data) <= 4 and all(isinstance(item, str) for item in data):
            return data
        raise serializers.ValidationError("Expected a string or an array of at most 4 strings.")

    def to_representation(self, value: Any) -> Any:
        return value


def _optional(field_class: type[serializers.Field], **kwargs: Any) -> serializers.Field:
    return field_class(required=False, allow_null=True, **kwargs)


class ConversationObjectSerializer(serializers.Serializer):
    """The Responses API's `conversation: {"id": ...}`."""

    id = StrictCharField(max_length=128)


class ChatCompletionRequestSerializer(serializers.Serializer):
    # Optional: a request without it goes to the organization's default agent (turn_submit).
    model = StrictCharField(
        max_length=256,
        required=False,
        help_text="An agent's slug (GET /v1/models), or `agent:session` to name the session too. "
        "Without it, the organization's default agent answers.",
    )
    # Counted before any message is validated: a longer list is refused at once.
    messages = MessageSerializer(
        many=True,
        allow_empty=False,
        max_length=settings.PARLEY_MAX_MESSAGES_PER_REQUEST,
        help_text="The new messages; with a session, the server supplies the history. A resent "
        "whole transcript is recognised, and its stored prefix is not stored twice. At most "
        "`PARLEY_MAX_MESSAGES_PER_REQUEST` (2048) messages, holding at most as many tool calls in all.",
    )
    temperature = _optional(StrictFloatField, min_value=0, max_value=2)
    top_p = _optional(StrictFloatField, min_value=0, max_value=1)
    n = _optional(StrictIntegerField, min_value=1, max_value=128)
    stream = _optional(
        StrictBooleanField, help_text="Answer with Server-Sent Events of `chat.completion.chunk`s."
    )
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    stop = _optional(StopField)
    max_tokens = _optional(StrictIntegerField, min_value=1)
    max_completion_tokens = _optional(StrictIntegerField, min_value=1)
    presence_penalty = _optional(StrictFloatField, min_value=-2, max_value=2)
    frequency_penalty = _optional(StrictFloatField, min_value=-2, max_value=2)
    logit_bias = _optional(StrictDictField, child=StrictFloatField(min_value=-100, max_value=100))
    logprobs = _optional(StrictBooleanField)
    top_logprobs = _optional(StrictIntegerField, min_value=0, max_value=20)
    seed = _optional(StrictIntegerField)
    response_format = ResponseFormatSerializer(required=False, allow_null=True)
    tools = nullable_list(ToolSerializer(), max_length=MAX_TOOLS)
    tool_choice = _optional(
        OneOfField,
        string=serializers.ChoiceField(choices=["none", "auto", "required"]),
        object_serializer=NamedToolChoiceSerializer,
    )
    parallel_tool_calls = _optional(StrictBooleanField)
    user = _optional(
        StrictCharField,
        max_length=256,
        allow_blank=True,
        help_text="The end user; sessions can be listed by it.",
    )
    metadata = _optional(ChatMetadataField, help_text="Up to 16 string values.")
    functions = nullable_list(
        FunctionDefinitionSerializer(), max_length=MAX_TOOLS, help_text="Deprecated: read as `tools`."
    )
    function_call = _optional(
        OneOfField,
        string=serializers.ChoiceField(choices=["none", "auto"]),
        object_serializer=NamedFunctionSerializer,
        help_text="Deprecated: read as `tool_choice`.",
    )
    session_id = _optional(
        StrictCharField,
        max_length=128,
        help_text="Parley: the session to continue, or to create with this id (1-128 characters of "
        "`[A-Za-z0-9._:-]`; ids starting with `sess_` or `turn_` are Parley's and never created). "
        "Without it a new session is created and returned (with `auto_create_sessions` off, the call "
        "is stateless).",
    )
    # Synonyms of session_id, so that clients of Dify, Assistants threads and Responses
    # conversations keep their ids.
    conversation_id = _optional(
        StrictCharField, max_length=128, help_text="Parley: a synonym of `session_id` (Dify)."
    )
    thread_id = _optional(
        StrictCharField, max_length=128, help_text="Parley: a synonym of `session_id` (Assistants threads)."
    )
    conversation = _optional(
        OneOfField,
        string=StrictCharField(max_length=128),
        object_serializer=ConversationObjectSerializer,
        help_text='Parley: a synonym of `session_id` (Responses API): an id or `{"id": …}`.',
    )
    # Start the session's transcript over before this turn's messages are stored.
    session_reset = _optional(
        StrictBooleanField,
        help_text="Parley: start the session's transcript over before storing this turn's messages.",
    )

    def validate_session_id(self, value: str | None) -> str | None:
        return check_session_id(value)

    def validate_conversation_id(self, value: str | None) -> str | None:
        return check_session_id(value)

    def validate_thread_id(self, value: str | None) -> str | None:
        return check_session_id(value)

    def validate_conversation(self, value: str | dict | None) -> str | None:
        if isinstance(value, dict):
            try:
                return check_session_id(value["id"])
            except serializers.ValidationError as exc:
                raise serializers.ValidationError({"id": exc.detail}) from None
        return check_session_id(value)

    def validate_logit_bias(self, value: dict | None) -> dict | None:
        for token in value or {}:
            if not TOKEN_ID.fullmatch(token):
                raise serializers.ValidationError({token: ["Keys must be token ids (integers)."]})
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = {key: value for key, value in attrs.items() if value is not None}
        if attrs.get("session_reset") is False:
            del attrs["session_reset"]  # the default: not a parameter of the turn
        attrs = _session_from_synonyms(attrs)
        attrs = _session_from_model(attrs)
        if attrs.get("functions"):
            if attrs.get("tools"):
                raise _invalid("functions", "Use either 'tools' or the deprecated 'functions', not both.")
            attrs = _functions_as_tools(attrs)
        _check_tool_choice(attrs)
        if "top_logprobs" in attrs and not attrs.get("logprobs"):
            raise _invalid("top_logprobs", "top_logprobs needs logprobs to be true.")
        if "stream_options" in attrs and attrs.get("stream") is False:
            # Without `stream`, a route or an Accept header may still make it a stream.
            raise _invalid("stream_options", "stream_options is only allowed when stream is true.")
        names = [tool["function"]["name"] for tool in attrs.get("tools", [])]
        if len(names) != len(set(names)):
            raise _invalid("tools", "Tool function names must be unique.")
        return attrs


def check_session_id(value: str | None) -> str | None:
    if value is not None and not SESSION_ID_PATTERN.fullmatch(value):
        raise serializers.ValidationError("Must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'.")
    return value


_SESSION_ID_SYNONYMS = ("conversation_id", "thread_id", "conversation")


def _session_from_synonyms(attrs: dict[str, Any]) -> dict[str, Any]:
    """`conversation_id`, `thread_id` and `conversation` name the session like `session_id`;
    naming two different sessions is refused, naming the second field."""
    attrs = dict(attrs)
    named_by = "session_id" if "session_id" in attrs else None
    for field in _SESSION_ID_SYNONYMS:
        if field not in attrs:
            continue
        value = attrs.pop(field)
        if named_by is None:
            attrs["session_id"], named_by = value, field
        elif value != attrs["session_id"]:
            raise _invalid(field, f"'{field}' names a different session than '{named_by}'.")
    if named_by is not None:
        attrs["session_id_field"] = named_by
    return attrs


def _session_from_model(attrs: dict[str, Any]) -> dict[str, Any]:
    """`model: "agent:session"` names the session too."""
    _, _, model_session = attrs.get("model", "").partition(":")
    if not model_session:
        return attrs
    if not SESSION_ID_PATTERN.fullmatch(model_session):
        raise _invalid("model", "The session part of 'agent:session' is malformed.")
    if attrs.get("session_id", model_session) != model_session:
        named_by = attrs.get("session_id_field", "session_id")
        raise _invalid(named_by, f"'model' names a different session than '{named_by}'.")
    return {**attrs, "session_id": model_session}


def _invalid(field: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({field: [message]})


def _functions_as_tools(attrs: dict[str, Any]) -> dict[str, Any]:
    attrs = dict(attrs)
    attrs["tools"] = [{"type": "function", "function": function} for function in attrs.pop("functions")]
    attrs["legacy_function_call"] = True
    choice = attrs.pop("function_call", None)
    if isinstance(choice, dict):
        attrs["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None:
        attrs["tool_choice"] = choice
    return attrs


def _check_tool_choice(attrs: dict[str, Any]) -> None:
    choice = attrs.get("tool_choice")
    if choice is None:
        return
    tools = attrs.get("tools") or []
    if not tools and choice != "none":
        raise _invalid("tool_choice", "tool_choice is only allowed when tools are specified.")
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        if wanted not in {tool["function"]["name"] for tool in tools}:
            raise serializers.ValidationError(
                {"tool_choice": {"function": {"name": [f"No tool named '{wanted}' is defined in 'tools'."]}}}
            )


_NOT_PARAMS = {"model", "messages", "session_id", "session_id_field", "stream", "stream_options"}


@dataclass(frozen=True)
class ChatRequest:
    turn: TurnRequest
    stream: bool | None  # None when the body did not say
    include_usage: bool
    include_tool_steps: bool


def chat_request_from_body(raw: bytes, *, nlx_deployment: str | None = None) -> ChatRequest:
    """A ChatRequest from a request's body: work that grows with the body, so the views run it off
    the event loop (config/offload.py), large bodies in another process (so it pickles: bytes in,
    a ChatRequest or an ApiError out). On the NLX route the deployment names the agent and
    `model: "nlx:{conversationId}"` the session."""
    payload = json_body_parse(raw)
    if nlx_deployment is not None and isinstance(payload, dict):
        model = payload.get("model", "nlx")
        if model != "nlx" and not (isinstance(model, str) and model.startswith("nlx:")):
            raise InvalidRequest("On this route 'model' is 'nlx' or 'nlx:{conversationId}'.", param="model")
        conversation = model.removeprefix("nlx").removeprefix(":")
        payload = {**payload, "model": f"{nlx_deployment}:{conversation}" if conversation else nlx_deployment}
    return parse_chat_request(payload)


def parse_chat_request(payload: Any) -> ChatRequest:
    """A ChatRequest from a decoded JSON body, or an InvalidRequest naming the field."""
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    serializer = ChatCompletionRequestSerializer(data=payload)
    if not serializer.is_valid():
        raise validation_error(serializer.errors)
    data = serializer.validated_data
    turn = TurnRequest(
        agent_slug=data["model"].partition(":")[0] if "model" in data else None,
        session_id=data.get("session_id"),
        messages=_plain(data["messages"]),
        params={key: _plain(value) for key, value in data.items() if key not in _NOT_PARAMS},
    )
    options = data.get("stream_options") or {}
    return ChatRequest(
        turn=turn,
        stream=data.get("stream"),
        include_usage=bool(options.get("include_usage")),
        include_tool_steps=bool(options.get("include_tool_steps")),
    )


def _plain(value: Any) -> Any:
    """Validated data as plain JSON values (DRF hands back OrderedDicts and ReturnLists)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
