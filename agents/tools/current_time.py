"""`current_time`: the date and time now, in a time zone the model names (IANA, e.g.
"Europe/Paris"); models do not know the date. An agent may set `default_timezone`, used when the
model names none (otherwise UTC)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rest_framework import serializers

from agents.backends.base import validated_config
from agents.tools.base import ToolContext, ToolError, function_definition, tool_name_field

DESCRIPTION = (
    "The current date and time in a time zone, as ISO 8601 with the UTC offset and the weekday, "
    "for example 2026-11-21T23:50:00+01:00 (Saturday)."
)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: not a zone key at all ("", "../x", "/etc/localtime").
        raise ToolError(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris") from None


def now_in(timezone: str) -> str:
    moment = datetime.now(zone(timezone)).replace(microsecond=0)
    return f"{moment.isoformat()} ({moment.strftime('%A')})"


class CurrentTimeTool:
    def __init__(self, name: str, default_timezone: str) -> None:
        self.name = name
        self.default_timezone = default_timezone

    def definition(self) -> dict[str, Any]:
        parameters = {
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "description": f"An IANA time zone name such as Europe/Paris; {self.default_timezone} "
                    "when omitted",
                    "maxLength": 64,
                }
            },
            "additionalProperties": False,
        }
        return function_definition(self.name, DESCRIPTION, parameters)

    def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        return now_in(arguments.get("timezone") or self.default_timezone)


class CurrentTimeSettings(serializers.Serializer):
    name = tool_name_field(required=False)
    default_timezone = serializers.CharField(required=False, max_length=64)

    def validate_default_timezone(self, value: str) -> str:
        try:
            zone(value)
        except ToolError as error:
            raise serializers.ValidationError(f"Unknown time zone {value!r}.") from error
        return value


class CurrentTime:
    default_name = "current_time"

    def validate_config(self, settings: dict[str, Any], *, previous: dict[str, Any] | None) -> dict[str, Any]:
        return validated_config(CurrentTimeSettings, settings)

    def public_config(self, settings: dict[str, Any]) -> dict[str, Any]:
        return dict(settings)

    def build(self, settings: dict[str, Any]) -> CurrentTimeTool:
        return CurrentTimeTool(
            settings.get("name", self.default_name), settings.get("default_timezone", "UTC")
        )
