"""Serializer fields with JSON's own types: OpenAI refuses "0.5" for a number and 1 for a
boolean, and so does Parley (DRF's stock fields would coerce them)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


# Every integer of the API is a signed 64-bit one, as in OpenAI's schema, unless a field says less.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class StrictIntegerField(serializers.IntegerField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", INT64_MIN)
        kwargs.setdefault("max_value", INT64_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Expected a string."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictDictField(serializers.DictField):
    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        return super().to_internal_value(data)


class StrictListField(serializers.ListField):
    def to_internal_value(self, data: Any) -> list:
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class JsonObjectField(serializers.Field):
    """Any JSON object, kept as it is (JSON Schemas, for instance)."""

    default_error_messages = {"invalid": "Expected a JSON object."}

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class OneOfField(serializers.Field):
    """A value that may be a string or an object, as several OpenAI fields are."""

    def __init__(self, *, string: serializers.Field | None, object_serializer: type | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.string_field = string
        self.object_serializer = object_serializer

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and self.string_field is not None:
            return self.string_field.run_validation(data)
        if isinstance(data, dict) and self.object_serializer is not None:
            serializer = self.object_serializer(data=data)
            serializer.is_valid(raise_exception=True)
            return serializer.validated_data
        raise serializers.ValidationError("Expected a string or an object.", code="invalid")

    def to_representation(self, value: Any) -> Any:
        return value


# OpenAI's metadata rules, for every body and filter that holds metadata.
METADATA_MAX_KEYS = 16
METADATA_KEY_LENGTH = 64
METADATA_VALUE_LENGTH = 512


class MetadataField(StrictDictField):
    """OpenAI's metadata: at most 16 keys of 1 to 64 characters, string values of at most 512."""

    min_key_length = 1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=StrictCharField(max_length=METADATA_VALUE_LENGTH, allow_blank=True), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str]:
        value = super().to_internal_value(data)
        if len(value) > METADATA_MAX_KEYS:
            raise serializers.ValidationError(f"At most {METADATA_MAX_KEYS} keys.")
        for key in value:
            if not self.min_key_length <= len(key) <= METADATA_KEY_LENGTH:
                raise serializers.ValidationError(self._key_length_message())
        return dict(value)

    def _key_length_message(self) -> str:
        if self.min_key_length == 0:
            return f"Keys are at most {METADATA_KEY_LENGTH} characters."
        return f"Keys are {self.min_key_length} to {METADATA_KEY_LENGTH} characters."


class ChatMetadataField(MetadataField):
    """The chat request's metadata: the same rules, but an empty key passes, as it always has
    there. (A subclass, so that the schema's MetadataField extension leaves it as it was.)"""

    min_key_length = 0
