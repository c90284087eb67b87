"""What the chat and Sessions APIs answer: each object's one serializer renders it and, through
drf-spectacular, documents it.

The chat completion and its stream's chunks are built by plain functions on the hot path
(`chat_completion` below, the chunk functions of sessions/chunks.py): a serializer is several
times slower there. Their serializers document exactly what those functions build, and
tests/test_openapi.py checks live answers against them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers
from rest_framework.fields import SkipField

from config.shapes import (
    BlankAsNullCharField,
    Constant,
    ErrorObjectField,
    StoredListSerializer,
    UnixTime,
    deleted_shape,
)
from sessions.api.message_serializers import PART_TYPES_BY_ROLE, FunctionCallSerializer, ToolCallSerializer
from sessions.chunks import completion_header, usage_with_details
from sessions.models import Message, Session, Turn

# Choice sets that several serializers share, each named once in the schema
# (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
MESSAGE_ROLES = [*PART_TYPES_BY_ROLE, "function"]
TURN_STATUSES = [status.value for status in Turn.Status]
FUNCTION_TYPES = ["function"]
RESPONSE_FORMAT_TYPES = ["text", "json_object", "json_schema"]
FINISH_REASONS = ["stop", "length", "tool_calls", "content_filter", "function_call"]


# --- usage ---------------------------------------------------------------------------------------


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


# --- chat completions (hot path: built by functions, documented by serializers) -------------------


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


class ChatCompletionSerializer(serializers.Serializer):
    """OpenAI's `chat.completion`, plus the session it was stored in."""

    # Built by `chat_completion` below.

    id = serializers.CharField()
    object = Constant("chat.completion")
    created = UnixTime()
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


def chat_completion(turn: Turn) -> dict[str, Any]:
    """A completed turn as a ChatCompletionSerializer (the turn's session loaded)."""
    legacy = turn.params.get("legacy_function_call", False)
    usage = turn.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        **completion_header(turn, "chat.completion"),
        "service_tier": "default",
        "choices": [_choice(choice, legacy) for choice in turn.output["choices"]],
        "usage": usage_with_details(usage),
        "session_id": turn.session.external_id if turn.session_id else None,
    }


def _choice(choice: dict[str, Any], legacy: bool) -> dict[str, Any]:
    stored = choice["message"]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": stored.get("content"),
        "refusal": stored.get("refusal"),
        "annotations": [],
    }
    finish_reason = choice["finish_reason"]
    calls = stored.get("tool_calls")
    if calls and legacy:  # a client of the deprecated `functions` gets `function_call` back
        message["function_call"] = calls[0]["function"]
        finish_reason = "function_call"
    elif calls:
        message["tool_calls"] = calls
    return {
        "index": choice["index"],
        "message": message,
        "logprobs": choice.get("logprobs"),
        "finish_reason": finish_reason,
    }


class ChatCompletionChunkChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    delta = serializers.DictField(
        help_text="`role` (first chunk), `content`, or `tool_calls` fragments (`index`, `id`, "
        "`function.name`, `function.arguments`)."
    )
    logprobs = serializers.DictField(allow_null=True)
    finish_reason = serializers.CharField(allow_null=True)


class ChatCompletionChunkSerializer(serializers.Serializer):
    """One `data:` event of a stream: OpenAI's `chat.completion.chunk`, plus the session and turn (Parley)."""

    # Built by sessions/chunks.py (`chunk_base` and the chunk functions).

    id = serializers.CharField()
    object = Constant("chat.completion.chunk")
    created = UnixTime()
    model = serializers.CharField()
    system_fingerprint = serializers.CharField(required=False)
    session_id = serializers.CharField(required=False, allow_null=True)
    turn_id = serializers.CharField(required=False)
    choices = ChatCompletionChunkChoiceSerializer(many=True, help_text="Empty in the final usage chunk.")
    usage = CompletionUsageSerializer(required=False)
    tool_step = serializers.DictField(
        required=False,
        help_text="With `stream_options.include_tool_steps`: a server-side tool call (`type: tool_call`, "
        "`tool_call_id`, `name`, `arguments`) or its result (`type: tool_result`, `content`).",
    )


# --- sessions and their messages ------------------------------------------------------------------


class SessionMessageSerializer(serializers.Serializer):
    seq = serializers.IntegerField(help_text="The message's position in the session, from 1.")
    role = serializers.CharField(help_text="`system`, `developer`, `user`, `assistant` or `tool`.")
    content = serializers.JSONField(help_text="A string, an array of content parts, or null.")
    name = BlankAsNullCharField(allow_null=True)
    tool_calls = StoredListSerializer(child=ToolCallSerializer(), allow_null=True)
    tool_call_id = BlankAsNullCharField(allow_null=True)
    turn_id = serializers.CharField(allow_null=True, help_text="The turn that stored the message.")
    created = UnixTime()


class _Transcript(serializers.ListSerializer):
    """A session's messages, where the answer includes them: given as the context's `messages`."""

    def get_attribute(self, session: Session) -> list[Message]:
        messages = self.context.get("messages")
        if messages is None:
            raise SkipField()
        return messages


# A session; with `context={"messages": […]}`, its transcript too.
class SessionSerializer(serializers.Serializer):
    id = serializers.CharField(
        source="external_id", help_text="Client-chosen (1-128 of `[A-Za-z0-9._:-]`) or `sess_…`."
    )
    object = Constant("session")
    agent = serializers.CharField(source="agent.slug", allow_null=True)
    title = serializers.CharField(allow_blank=True)
    metadata = serializers.DictField(child=serializers.CharField(allow_blank=True))
    user = BlankAsNullCharField(
        source="end_user",
        allow_null=True,
        allow_blank=True,
        help_text="The end user: the `user` field of requests.",
    )
    message_count = serializers.IntegerField()
    created = UnixTime()
    updated = UnixTime()
    messages = _Transcript(
        child=SessionMessageSerializer(),
        required=False,
        help_text="The transcript, where the answer includes it.",
    )


class _EdgeId(serializers.CharField):
    """The id of a page's first (`index` 0) or last (-1) session; null on an empty page."""

    def __init__(self, index: int, **kwargs: Any) -> None:
        self.index = index
        super().__init__(source="data", allow_null=True, **kwargs)

    def get_attribute(self, page: dict[str, Any]) -> Session | None:
        sessions = super().get_attribute(page)
        return sessions[self.index] if sessions else None

    def to_representation(self, session: Session) -> str:
        return session.external_id


# A page of sessions: render it with `{"data": sessions, "has_more": …}`.
class SessionListSerializer(serializers.Serializer):
    object = Constant("list")
    data = SessionSerializer(many=True)
    first_id = _EdgeId(0)
    last_id = _EdgeId(-1, help_text="Pass it as `after` for the next page.")
    has_more = serializers.BooleanField()


SessionDeletedSerializer = deleted_shape("SessionDeleted", "session.deleted", serializers.CharField())


# --- turns ------------------------------------------------------------------------------------------


class TurnSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = Constant("turn")
    session_id = serializers.CharField(source="session.external_id", allow_null=True)
    model = serializers.CharField()
    status = serializers.ChoiceField(choices=TURN_STATUSES)
    created = UnixTime(source="queued_at")
    started_at = UnixTime(allow_null=True)
    finished_at = UnixTime(allow_null=True)
    usage = CompletionUsageSerializer(allow_null=True)
    error = ErrorObjectField(allow_null=True, help_text="Why the turn failed or was cancelled.")


class _UnixTimeMilliseconds(serializers.FloatField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value: datetime) -> float:
        return round(value.timestamp(), 3)


class _MillisecondsBetween(serializers.IntegerField):
    """The milliseconds from one of the turn's moments to another, null until both are known."""

    def __init__(self, start: str, end: str, **kwargs: Any) -> None:
        self.start, self.end = start, end
        super().__init__(source="*", allow_null=True, **kwargs)

    def to_representation(self, turn: Turn) -> int | None:
        start, end = getattr(turn, self.start), getattr(turn, self.end)
        return round((end - start).total_seconds() * 1000) if start and end else None


class TurnTimingsSerializer(serializers.Serializer):
    queued_at = _UnixTimeMilliseconds(allow_null=False, help_text="Unix time in seconds, to the millisecond.")
    started_at = _UnixTimeMilliseconds()
    first_token_at = _UnixTimeMilliseconds()
    finished_at = _UnixTimeMilliseconds()
    queue_ms = _MillisecondsBetween("queued_at", "started_at")
    time_to_first_token_ms = _MillisecondsBetween("started_at", "first_token_at")
    duration_ms = _MillisecondsBetween("started_at", "finished_at")


# A turn as an export shows it: where it stands, what it used and how long it took.
class TurnExportSerializer(serializers.Serializer):
    id = serializers.CharField()
    position = serializers.IntegerField()
    status = serializers.ChoiceField(choices=TURN_STATUSES)
    model = serializers.CharField()
    usage = CompletionUsageSerializer(allow_null=True)
    error = ErrorObjectField(allow_null=True)
    timings = TurnTimingsSerializer(source="*")


class ExportedSessionSerializer(SessionSerializer):
    turn_count = serializers.IntegerField()


# GET /v1/sessions/{id}/export: render it with `{"exported_at", "session", "messages", "turns"}`.
class SessionExportSerializer(serializers.Serializer):
    object = Constant("session.export")
    exported_at = UnixTime()
    session = ExportedSessionSerializer()
    messages = SessionMessageSerializer(many=True)
    turns = TurnExportSerializer(many=True)


# --- usage by day, agent or key ---------------------------------------------------------------------


class _PresentOnly:
    """A field of some rows only (the grouping's): left out of the others, even when nullable."""

    def get_attribute(self, row: dict[str, Any]) -> Any:
        if self.field_name not in row:
            raise SkipField()
        return row[self.field_name]


class _RowDate(_PresentOnly, serializers.DateField):
    pass


class _RowText(_PresentOnly, serializers.CharField):
    pass


class _RowInteger(_PresentOnly, serializers.IntegerField):
    pass


class UsageCountsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class UsageRowSerializer(serializers.Serializer):
    day = _RowDate(required=False, help_text="With `group_by=day`.")
    agent = _RowText(required=False, help_text="With `group_by=agent`.")
    api_key = _RowInteger(
        required=False, allow_null=True, help_text="With `group_by=key`; null for users' requests."
    )
    api_key_name = _RowText(required=False, allow_null=True)
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


# GET /v1/usage: render it with sessions.usage.usage_summary's answer.
class UsageSummarySerializer(serializers.Serializer):
    object = Constant("list")
    group_by = serializers.ChoiceField(choices=["day", "agent", "key"])
    start = serializers.DateField()
    end = serializers.DateField()
    data = UsageRowSerializer(many=True)
    totals = UsageCountsSerializer()
