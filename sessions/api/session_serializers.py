"""Input of the Sessions API: bodies (Parley's own endpoints refuse fields they don't know) and the
list's query parameters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from typing import Any

from django.http import QueryDict
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework import serializers

from config.errors import InvalidRequest
from config.inputs import UNKNOWN_PARAMETER, ascii_int, refuse_unknown_fields, text_problem
from sessions.api.chat_serializers import check_session_id
from sessions.api.fields import (
    METADATA_KEY_LENGTH,
    METADATA_MAX_KEYS,
    MetadataField,
    StrictCharField,
    StrictIntegerField,
)


class ClosedSerializer(serializers.Serializer):
    """An input serializer that refuses fields it does not define: a typo in a setting or a
    field that cannot be changed is an error, not a silent no-op. (The chat request ignores
    unknown fields instead, as OpenAI does.) `ignored_fields` are read-only fields of the
    resource's own answer, so that sending it back is harmless."""

    ignored_fields: frozenset[str] = frozenset()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        data = refuse_unknown_fields(
            data, known=self.fields, ignored=self.ignored_fields, refusal=UNKNOWN_PARAMETER
        )
        return super().to_internal_value(data)


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


# --- query parameters: GET /v1/sessions ------------------------------------------------------


class QuerySerializer(serializers.Serializer):
    """Query parameters, checked by fields like a body but refused as every query parameter is:
    the first problem, a 400 invalid_request naming the parameter (without a `detail` list, which
    locates problems in a body). Fields are checked in the order they are declared."""

    def __init__(self, query: QueryDict) -> None:
        # A plain dict (the last value of a repeated parameter, as QueryDict.get has it): DRF reads
        # a QueryDict as an HTML form, where an empty value would mean an absent one.
        super().__init__(data=query.dict())

    def validated_query(self) -> dict[str, Any]:
        if not self.is_valid():
            param, problems = next(iter(self.errors.items()))
            if isinstance(problems, dict):  # a field of several parameters names the one at fault
                param, problems = next(iter(problems.items()))
            raise InvalidRequest(str(problems[0]), param=param)
        return dict(self.validated_data)


class QueryTextField(serializers.Field):
    """A query parameter that is compared with stored text: one the database can take, and
    non-empty unless `allow_blank`."""

    def __init__(self, *, allow_blank: bool = True, **kwargs: Any) -> None:
        self.allow_blank = allow_blank
        super().__init__(required=False, **kwargs)

    def to_internal_value(self, data: str) -> str:
        problem = text_problem(data)
        if problem:
            raise serializers.ValidationError(f"Invalid value for '{self.field_name}': {problem[0]}")
        if not data and not self.allow_blank:
            raise serializers.ValidationError(f"{self.field_name} must not be empty.")
        return data

    def to_representation(self, value: str) -> str:
        return value


_UNIX_SECONDS = re.compile(r"^[0-9]{1,11}(\.[0-9]+)?$")


class QueryMomentField(serializers.Field):
    """Unix seconds or an ISO 8601 date or date and time (UTC unless it says otherwise)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def to_internal_value(self, raw: str) -> datetime:
        try:
            if _UNIX_SECONDS.match(raw):
                return datetime.fromtimestamp(float(raw), tz=UTC)
            moment = parse_datetime(raw)
            if moment is None and (day := parse_date(raw)) is not None:
                moment = datetime.combine(day, time.min)
        except (ValueError, OverflowError, OSError):
            moment = None
        if moment is None:
            raise serializers.ValidationError(
                f"{self.field_name} must be unix seconds or an ISO 8601 date and time, "
                "like 2025-01-31T12:00:00Z."
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


_METADATA_FILTER = re.compile(r"^metadata\[(.*)\]$")


class MetadataFiltersField(serializers.Field):
    """Every `metadata[KEY]=VALUE` parameter, as {KEY: VALUE}: the keys and values that sessions'
    metadata may hold (MetadataField), at most as many filters as it may hold keys."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def get_value(self, dictionary: dict[str, str]) -> dict[str, str]:
        return dictionary  # the filters are named by the parameters, not the field

    def to_internal_value(self, query: dict[str, str]) -> dict[str, str]:
        metadata: dict[str, str] = {}
        for name, value in query.items():
            match = _METADATA_FILTER.fullmatch(name)
            if match is None:
                continue
            key = match.group(1)
            problem = text_problem(key)
            if problem:  # named without its key, which cannot be printed
                raise _query_problem("metadata", f"A metadata filter's key is invalid. {problem[0]}")
            if not 1 <= len(key) <= METADATA_KEY_LENGTH:
                raise _query_problem(
                    name, f"{name}: a metadata key is 1 to {METADATA_KEY_LENGTH} characters."
                )
            problem = text_problem(value)
            if problem:
                raise _query_problem(name, f"Invalid value for '{name}': {problem[0]}")
            metadata[key] = value
        if len(metadata) > METADATA_MAX_KEYS:
            raise _query_problem("metadata", f"At most {METADATA_MAX_KEYS} metadata filters.")
        return metadata

    def to_representation(self, value: dict[str, str]) -> dict[str, str]:
        return value


def _query_problem(param: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({param: [message]})


class SessionListFiltersSerializer(QuerySerializer):
    """What GET /v1/sessions narrows the list to (selectors.SessionFilters); its pages are
    SessionCursorPagination's."""

    metadata = MetadataFiltersField()
    agent = QueryTextField(allow_blank=False)
    user = QueryTextField(allow_blank=False, source="end_user")
    created_after = QueryMomentField()
    created_before = QueryMomentField()


class LimitField(serializers.Field):
    """A page size: ASCII digits, from 1 to `max_value`."""

    def __init__(self, *, max_value: int, **kwargs: Any) -> None:
        self.max_value = max_value
        super().__init__(required=False, **kwargs)

    def to_internal_value(self, raw: str) -> int:
        limit = ascii_int(raw, max_digits=len(str(self.max_value)))
        if limit is None or not 1 <= limit <= self.max_value:
            raise serializers.ValidationError(
                f"{self.field_name} must be an integer from 1 to {self.max_value}."
            )
        return limit

    def to_representation(self, value: int) -> int:
        return value
