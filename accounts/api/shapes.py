"""What the accounts APIs answer (API keys, members, automation settings, JWT pairs): each
object's one serializer renders it and, through drf-spectacular, documents it."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import ALL_SCOPES, ApiKey, Membership
from accounts.services.keys import IssuedApiKey
from config.shapes import Constant, UnixTime, deleted_shape, list_envelope, nullable_int

# Named once in the schema (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
MEMBER_ROLES = [role.value for role in Membership.Role]


class ApiKeyCreatorSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    username = serializers.CharField()


class ApiKeyLimitsSerializer(serializers.Serializer):
    requests_per_minute = nullable_int("Null: no limit of the key's own.")
    tokens_per_day = nullable_int()
    concurrent_turns = nullable_int()


class _RedactedValue(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", **kwargs)

    def to_representation(self, api_key: ApiKey) -> str:
        return f"{api_key.prefix}…{api_key.last_four}"


# A key as the API shows it: how to recognise it, never what it is.
class ApiKeySerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    object = Constant("api_key")
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, `sk-parley-…`.")
    last_four = serializers.CharField()
    redacted_value = _RedactedValue()
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=ALL_SCOPES))
    created = UnixTime()
    last_used_at = UnixTime(allow_null=True)
    expires_at = UnixTime(allow_null=True)
    revoked_at = UnixTime(allow_null=True)
    created_by = ApiKeyCreatorSerializer(allow_null=True)
    limits = ApiKeyLimitsSerializer(source="*")


# A key just issued, the one answer that holds the whole key: render it with an IssuedApiKey.
class IssuedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The whole key, shown in this answer only: store it now.")

    def to_representation(self, issued: IssuedApiKey) -> dict[str, Any]:
        return {**ApiKeySerializer(issued.api_key).data, "key": issued.secret}


# A membership, as the user it names.
class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="user.pk", help_text="The user's id.")
    object = Constant("organization.member")
    username = serializers.CharField(source="user.username")
    email = serializers.CharField(source="user.email", allow_blank=True)
    role = serializers.ChoiceField(choices=MEMBER_ROLES)
    created = UnixTime()


class AutomationSettingsSerializer(serializers.Serializer):
    object = Constant("automation_settings")
    auto_create_sessions = serializers.BooleanField(
        help_text="An unknown client-chosen `session_id` creates the session (an unknown `sess_…` id is "
        "always 404); off: 404, and no `session_id` is stateless."
    )
    session_idle_ttl = nullable_int("Seconds without activity after which a session is deleted.")
    history_max_messages = nullable_int("How many stored messages an agent sees at most.")
    history_max_tokens = nullable_int("How many tokens of stored messages an agent sees at most.")
    auto_title = serializers.BooleanField(help_text="Name a session from its first user message.")
    default_agent = serializers.CharField(
        source="default_agent.slug", allow_null=True, help_text="The agent of requests without `model`."
    )


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="A JWT access token: send it as `Authorization: Bearer …`.")
    refresh = serializers.CharField(help_text="Trade it at /v1/auth/token/refresh; used once.")


ApiKeyListSerializer = list_envelope("ApiKeyList", ApiKeySerializer)
MemberListSerializer = list_envelope("MemberList", MemberSerializer)
MemberDeletedSerializer = deleted_shape(
    "MemberDeleted", "organization.member.deleted", serializers.IntegerField()
)
