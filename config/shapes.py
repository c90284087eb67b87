"""Fields shared by the output serializers (each app's api/shapes.py): one serializer renders an
object of the API and, read by drf-spectacular, documents it.

The fields render exactly what the API has always answered: timestamps as unix seconds, an
object's `object` name, a blank text as null, stored JSON (tool calls, an error) as it is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rest_framework import serializers


class Constant(serializers.CharField):
    """A string that is always `value`, like an object's `object` field."""

    def __init__(self, value: str, **kwargs: Any) -> None:
        self.value = value
        kwargs.setdefault("source", "*")
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return self.value


class UnixTime(serializers.IntegerField):
    """A moment as unix seconds (null where the moment is)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "Unix time in seconds.")
        super().__init__(**kwargs)

    def to_representation(self, value: datetime) -> int:
        return int(value.timestamp())


class BlankAsNullCharField(serializers.CharField):
    """A text the model stores as "" when there is none, answered as null."""

    def get_attribute(self, instance: Any) -> str | None:
        return super().get_attribute(instance) or None


class StoredListSerializer(serializers.ListSerializer):
    """A list stored as the API shows it (a message's tool calls): answered as stored,
    documented by its child serializer."""

    def to_representation(self, data: Any) -> Any:
        return data


class ErrorObjectField(serializers.Field):
    """OpenAI's `error` object (the envelope's inner part), as a turn records it."""

    def get_attribute(self, instance: Any) -> dict[str, Any] | None:
        return (super().get_attribute(instance) or {}).get("error")

    def to_representation(self, value: dict[str, Any]) -> dict[str, Any]:
        return value


def nullable_int(help_text: str = "", **kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(allow_null=True, help_text=help_text, **kwargs)


def list_envelope(name: str, item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """OpenAI's list envelope, `{"object": "list", "data": [item, …]}`, as the serializer class
    `{name}Serializer` (the schema's component `{name}`): render it with `{"data": items}`."""
    fields = {"object": Constant("list"), "data": item(many=True)}
    return serializers.SerializerMetaclass(f"{name}Serializer", (serializers.Serializer,), fields)


def deleted_shape(name: str, object_name: str, id_field: serializers.Field) -> type[serializers.Serializer]:
    """What a DELETE answers, `{"id", "object": object_name, "deleted": true}`, as the serializer
    class `{name}Serializer`: render it with `{"id": …}`."""
    fields = {"id": id_field, "object": Constant(object_name), "deleted": _True()}
    return serializers.SerializerMetaclass(f"{name}Serializer", (serializers.Serializer,), fields)


class _True(serializers.BooleanField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("source", "*")
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> bool:
        return True
