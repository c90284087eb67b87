"""The shapes of the API's answers, for the OpenAPI description only.

The views build their answers by hand (`JsonResponse(session_payload(...))`), so drf-spectacular
cannot read them; these serializers describe them (no view uses them), and tests/test_openapi.py
checks them against a live server's answers: a field added to an answer must be added here."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import ALL_SCOPES, Membership
from sessions.api.chat_serializers import PART_TYPES_BY_ROLE, FunctionCallSerializer, ToolCallSerializer
from sessions.models import Turn

# Names of choice sets that several serializers share (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
MESSAGE_ROLES = [*PART_TYPES_BY_ROLE, "function"]
MEMBER_ROLES = [role.value for role in Membership.Role]
TURN_STATUSES = [status.value for status in Turn.Status]
FUNCTION_TYPES = ["function"]
RESPONSE_FORMAT_TYPES = ["text", "json_object", "json_schema"]
FINISH_REASONS = ["stop", "length", "tool_calls", "content_filter", "function_call"]


class Constant(serializers.CharField):
    """A string that is always `value`, like an object's `object` field."""

    def __init__(self, value: str, **kwargs: Any) -> None:
        self.value = value
        super().__init__(**kwargs)


class ErrorObjectField(serializers.Field):
    """OpenAI's `error` object (the envelope's inner part), as a turn records it."""


def _timestamp(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(help_text="Unix time in seconds.", **kwargs)


def _nullable_int(help_text: str = "") -> serializers.IntegerField:
    return serializers.IntegerField(allow_null=True, help_text=help_text)


# --- chat completions ------------------------------------------------------------------------


class ChatCompletionMessageSerializer(serializers.Serializer):
    role = Constant("assistant")
    content = serializers.CharField(allow_null=True, allow_blank=True)
    refusal = serializers.CharField(allow_null=True, allow_blank=True)
    annotations = serializers.ListField(child=serializers.DictField())
    tool_calls = ToolCallSerializer(
        many=True, required=False, help_text="The functions the model calls; `finish_reason` is `tool_calls`."
    )
    function_call = FunctionCallSerializer(
        required=False, help_text="Instead of `tool_calls` when the request used the deprecated `functions`."
    )


class ChatCompletionChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatCompletionMessageSerializer()
    logprobs = serializers.DictField(allow_null=True)
    finish_reason = serializers.ChoiceField(choices=FINISH_REASONS)


class PromptTokensDetailsSerializer(serializers.Serializer):
    cached_tokens = serializers.IntegerField()
    audio_tokens = serializers.IntegerField()


class CompletionTokensDetailsSerializer(serializers.Serializer):
    reasoning_tokens = serializers.IntegerField()
    audio_tokens = serializers.IntegerField()
    accepted_prediction_tokens = serializers.IntegerField()
    rejected_prediction_tokens = serializers.IntegerField()


class CompletionUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    prompt_tokens_details = PromptTokensDetailsSerializer(required=False)
    completion_tokens_details = CompletionTokensDetailsSerializer(required=False)


class ChatCompletionSerializer(serializers.Serializer):
    """OpenAI's `chat.completion`, plus the session it was stored in."""

    id = serializers.CharField()
    object = Constant("chat.completion")
    created = _timestamp()
    model = serializers.CharField(help_text="The agent that answered.")
    system_fingerprint = serializers.CharField()
    service_tier = serializers.CharField()
    choices = ChatCompletionChoiceSerializer(many=True)
    usage = CompletionUsageSerializer()
    session_id = serializers.CharField(
        allow_null=True,
        help_text="Parley: the session this turn was stored in (null for a stateless call). Send it "
        "back with only the new messages to continue the conversation.",
    )


# --- models and agents -------------------------------------------------------------------------


class ModelSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The agent's slug: the `model` of a chat completion request.")
    object = Constant("model")
    created = _timestamp()
    owned_by = serializers.CharField(help_text="The organization's slug.")


class ModelListSerializer(serializers.Serializer):
    object = Constant("list")
    data = ModelSerializer(many=True)


class AgentSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The slug: the `model` name of chat completion requests.")
    object = Constant("agent")
    name = serializers.CharField()
    backend = serializers.CharField(help_text="`echo`, `openai` or `webhook`.")
    backend_config = serializers.DictField(help_text="The backend's settings; secrets are never shown.")
    system_prompt = serializers.CharField(allow_blank=True)
    default_params = serializers.DictField(help_text="Chat parameters used when a request leaves them out.")
    tools = serializers.ListField(child=serializers.DictField(), help_text="Server-side tools.")
    max_tool_steps = serializers.IntegerField()
    history_max_messages = _nullable_int()
    history_max_tokens = _nullable_int()
    enabled = serializers.BooleanField()
    created = _timestamp()
    updated = _timestamp()


class AgentListSerializer(serializers.Serializer):
    object = Constant("list")
    data = AgentSerializer(many=True)


class AgentDeletedSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("agent.deleted")
    deleted = serializers.BooleanField()


# --- sessions and turns ------------------------------------------------------------------------


class SessionMessageSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="The message's position in the session, from 1.")
    role = serializers.CharField(help_text="`system`, `developer`, `user`, `assistant` or `tool`.")
    content = serializers.JSONField(help_text="A string, an array of content parts, or null.")
    name = serializers.CharField(allow_null=True)
    tool_calls = ToolCallSerializer(many=True, allow_null=True)
    tool_call_id = serializers.CharField(allow_null=True)
    turn_id = serializers.CharField(allow_null=True, help_text="The turn that stored the message.")
    created = _timestamp()


class SessionSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Client-chosen (1-128 of `[A-Za-z0-9._:-]`) or `sess_…`.")
    object = Constant("session")
    agent = serializers.CharField(allow_null=True)
    title = serializers.CharField(allow_blank=True)
    metadata = serializers.DictField(child=serializers.CharField(allow_blank=True))
    user = serializers.CharField(
        allow_null=True, allow_blank=True, help_text="The end user: the `user` field of requests."
    )
    message_count = serializers.IntegerField()
    created = _timestamp()
    updated = _timestamp()
    messages = SessionMessageSerializer(
        many=True, required=False, help_text="The transcript, where the answer includes it."
    )


class SessionListSerializer(serializers.Serializer):
    object = Constant("list")
    data = SessionSerializer(many=True)
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True, help_text="Pass it as `after` for the next page.")
    has_more = serializers.BooleanField()


class SessionDeletedSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("session.deleted")
    deleted = serializers.BooleanField()


class TurnSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("turn")
    session_id = serializers.CharField(allow_null=True)
    model = serializers.CharField()
    status = serializers.ChoiceField(choices=TURN_STATUSES)
    created = _timestamp()
    started_at = _timestamp(allow_null=True)
    finished_at = _timestamp(allow_null=True)
    usage = CompletionUsageSerializer(allow_null=True)
    error = ErrorObjectField(allow_null=True, help_text="Why the turn failed or was cancelled.")


class TurnTimingsSerializer(serializers.Serializer):
    queued_at = serializers.FloatField(help_text="Unix time in seconds, to the millisecond.")
    started_at = serializers.FloatField(allow_null=True)
    first_token_at = serializers.FloatField(allow_null=True)
    finished_at = serializers.FloatField(allow_null=True)
    queue_ms = _nullable_int()
    time_to_first_token_ms = _nullable_int()
    duration_ms = _nullable_int()


class TurnExportSerializer(serializers.Serializer):
    id = serializers.CharField()
    position = serializers.IntegerField()
    status = serializers.ChoiceField(choices=TURN_STATUSES)
    model = serializers.CharField()
    usage = CompletionUsageSerializer(allow_null=True)
    error = ErrorObjectField(allow_null=True)
    timings = TurnTimingsSerializer()


class ExportedSessionSerializer(SessionSerializer):
    turn_count = serializers.IntegerField()


class SessionExportSerializer(serializers.Serializer):
    object = Constant("session.export")
    exported_at = _timestamp()
    session = ExportedSessionSerializer()
    messages = SessionMessageSerializer(many=True)
    turns = TurnExportSerializer(many=True)


# --- API keys, members, settings, usage --------------------------------------------------------


class ApiKeyCreatorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class ApiKeyLimitsSerializer(serializers.Serializer):
    requests_per_minute = _nullable_int("Null: no limit of the key's own.")
    tokens_per_day = _nullable_int()
    concurrent_turns = _nullable_int()


class ApiKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    object = Constant("api_key")
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, `sk-parley-…`.")
    last_four = serializers.CharField()
    redacted_value = serializers.CharField()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ALL_SCOPES))
    created = _timestamp()
    last_used_at = _timestamp(allow_null=True)
    expires_at = _timestamp(allow_null=True)
    revoked_at = _timestamp(allow_null=True)
    created_by = ApiKeyCreatorSerializer(allow_null=True)
    limits = ApiKeyLimitsSerializer()


class IssuedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The whole key, shown in this answer only: store it now.")


class ApiKeyListSerializer(serializers.Serializer):
    object = Constant("list")
    data = ApiKeySerializer(many=True)


class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The user's id.")
    object = Constant("organization.member")
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    role = serializers.ChoiceField(choices=MEMBER_ROLES)
    created = _timestamp()


class MemberListSerializer(serializers.Serializer):
    object = Constant("list")
    data = MemberSerializer(many=True)


class MemberDeletedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    object = Constant("organization.member.deleted")
    deleted = serializers.BooleanField()


class AutomationSettingsSerializer(serializers.Serializer):
    object = Constant("automation_settings")
    auto_create_sessions = serializers.BooleanField(
        help_text="An unknown client-chosen `session_id` creates the session (an unknown `sess_…` id is "
        "always 404); off: 404, and no `session_id` is stateless."
    )
    session_idle_ttl = _nullable_int("Seconds without activity after which a session is deleted.")
    history_max_messages = _nullable_int("How many stored messages an agent sees at most.")
    history_max_tokens = _nullable_int("How many tokens of stored messages an agent sees at most.")
    auto_title = serializers.BooleanField(help_text="Name a session from its first user message.")
    default_agent = serializers.CharField(allow_null=True, help_text="The agent of requests without `model`.")


class UsageCountsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class UsageRowSerializer(UsageCountsSerializer):
    day = serializers.DateField(required=False, help_text="With `group_by=day`.")
    agent = serializers.CharField(required=False, help_text="With `group_by=agent`.")
    api_key = serializers.IntegerField(
        required=False, allow_null=True, help_text="With `group_by=key`; null for users' requests."
    )
    api_key_name = serializers.CharField(required=False, allow_null=True)


class UsageSummarySerializer(serializers.Serializer):
    object = Constant("list")
    group_by = serializers.ChoiceField(choices=["day", "agent", "key"])
    start = serializers.DateField()
    end = serializers.DateField()
    data = UsageRowSerializer(many=True)
    totals = UsageCountsSerializer()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="A JWT access token: send it as `Authorization: Bearer …`.")
    refresh = serializers.CharField(help_text="Trade it at /v1/auth/token/refresh; used once.")


class HealthSerializer(serializers.Serializer):
    status = Constant("ok")


class ReadinessSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    checks = serializers.DictField(
        child=serializers.CharField(), help_text="`database`, `redis`, `broker`: `ok` or `error: …`."
    )
