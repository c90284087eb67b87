"""The interfaces of server-side tools.

A server tool runs on the worker when the model calls it: `ServerTool.run` gets the call's
arguments (already parsed and checked against the tool's `parameters` schema) and returns the
content of the `tool` message the model reads next. A `ToolType` is one kind of tool as an agent
configures it (`Agent.tools` entries): it validates and stores the entry's settings, shows them
without secrets, and builds the runnable tool from what was stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rest_framework import serializers


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: passed to every tool, and sent to tenant-defined HTTP tools."""

    organization: str
    agent: str
    session_id: str | None
    turn_id: str


class ToolError(Exception):
    """A failure told to the model as the tool's result, not a crash."""


class ServerTool(Protocol):
    name: str

    def definition(self) -> dict[str, Any]:
        """The OpenAI tool definition:
        {"type": "function", "function": {"name", "description", "parameters"}}."""
        ...

    def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        """The tool message content. Raise ToolError for a failure the model should hear about."""
        ...


class ToolType(Protocol):
    # The tool's name when an entry gives none (None: the entry must name the tool).
    default_name: str | None

    def validate_config(self, settings: dict[str, Any], *, previous: dict[str, Any] | None) -> dict[str, Any]:
        """The settings to store (without "type"), secrets sealed, or a DRF ValidationError keyed
        by setting. `previous` is the stored entry of the same type and name, if any: a secret
        that an update leaves out is kept from it."""
        ...

    def public_config(self, settings: dict[str, Any]) -> dict[str, Any]:
        """The stored settings as APIs and pages may show them: without any secret."""
        ...

    def build(self, settings: dict[str, Any]) -> ServerTool:
        """The runnable tool for stored settings."""
        ...


def function_definition(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description:
        function["description"] = description
    function["parameters"] = parameters
    return {"type": "function", "function": function}


TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


def tool_name_field(*, required: bool) -> serializers.RegexField:
    """A tool's name as OpenAI accepts function names."""
    return serializers.RegexField(
        TOOL_NAME_PATTERN,
        required=required,
        error_messages={"invalid": "1 to 64 letters, digits, underscores or hyphens."},
    )
