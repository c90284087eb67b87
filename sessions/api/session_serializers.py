"""Input of the Sessions API: Parley's own endpoints refuse fields they don't know."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config.errors import InvalidRequest
from sessions.api.chat_serializers import check_session_id
from sessions.api.fields import StrictCharField, StrictDictField, StrictIntegerField


class ClosedSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not define: a typo in a setting or a
    field that cannot be changed is an error, not a silent no-op. (The chat request ignores
    unknown fields instead, as OpenAI does.) `ignored_fields` are read-only fields of the
    resource's own answer, so that sending it back is harmless."""

    ignored_fields: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            for name in data:
                if name not in self.fields and name not in self.ignored_fields:
                    raise unknown_parameter(name, sorted(self.fields))
            data = {key: value for key, value in data.items() if key not in self.ignored_fields}
        return super().to_internal_value(data)


def unknown_parameter(name: str, known: list[str]) -> InvalidRequest:
    message = f"Unknown parameter: '{name}'. Known parameters: {', '.join(known)}."
    detail = [{"loc": ["body", name], "msg": "Unknown parameter.", "type": "unknown_parameter"}]
    return InvalidRequest(message, param=name, code="unknown_parameter", detail=detail)


_METADATA_MAX_KEYS = 16
_METADATA_KEY_LENGTH = 64
_METADATA_VALUE_LENGTH = 512


class MetadataField(StrictDictField):
    """OpenAI's metadata: at most 16 keys of at most 64 characters, string values of at most 512."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=StrictCharField(max_length=_METADATA_VALUE_LENGTH, allow_blank=True), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        value = super().to_internal_value(data)
        if len(value) > _METADATA_MAX_KEYS:
            raise serializers.ValidationError(f"At most {_METADATA_MAX_KEYS} keys.")
        for key in value:
            if not 1 <= len(key) <= _METADATA_KEY_LENGTH:
                raise serializers.ValidationError(f"Keys are 1 to {_METADATA_KEY_LENGTH} characters.")
        return dict(value)


def _session_id_value(value: str) -> str:
    return check_session_id(value) or value


class SessionCreateSerializer(ClosedSerializer):
    id = StrictCharField(required=False, max_length=128, validators=[_session_id_value])
    title = StrictCharField(required=False, max_length=200, allow_blank=True)
    metadata = MetadataField(required=False)
    agent = StrictCharField(required=False, max_length=64)


class SessionUpdateSerializer(ClosedSerializer):
    title = StrictCharField(required=False, max_length=200, allow_blank=True)
    metadata = MetadataField(required=False)


class SessionForkSerializer(ClosedSerializer):
    messages = StrictIntegerField(min_value=1, max_value=2_147_483_647)
    id = StrictCharField(required=False, max_length=128, validators=[_session_id_value])
