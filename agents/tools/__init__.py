"""Server-side tools: configured on an agent (`Agent.tools`), run on the worker when the model
calls them. One module per tool type, one interface (base.ToolType builds base.ServerTool).

- `validate_tools_config` checks what the Agents API receives and returns what to store;
- `public_tools_config` is what APIs and pages may show (no secrets);
- `server_tools_for` builds an agent's tools from what was stored;
- `execute_tool_call` runs one OpenAI tool call and always answers with the tool message content,
  errors included, so that the model can read what went wrong and the turn goes on."""

from __future__ import annotations

import json
import logging
from typing import Any

import jsonschema
from rest_framework import serializers

from agents.tools.base import ServerTool, ToolContext, ToolError, ToolType
from agents.tools.calculator import Calculator
from agents.tools.current_time import CurrentTime
from agents.tools.http_get import HttpGet
from agents.tools.http_tool import HttpToolType
from agents.tools.schema_validation import schema_errors

__all__ = [
    "BUILTIN",
    "MAX_TOOLS",
    "ServerTool",
    "ToolContext",
    "ToolError",
    "execute_tool_call",
    "public_tools_config",
    "server_tools_for",
    "validate_tools_config",
]

logger = logging.getLogger(__name__)

BUILTIN: dict[str, ToolType] = {
    "calculator": Calculator(),
    "current_time": CurrentTime(),
    "http_get": HttpGet(),
    "http": HttpToolType(),
}
MAX_TOOLS = 64
_MAX_ERROR_LENGTH = 500


def _tool_type(entry: Any) -> ToolType | None:
    kind = entry.get("type") if isinstance(entry, dict) else None
    return BUILTIN.get(kind) if isinstance(kind, str) else None


def tool_name(entry: dict[str, Any]) -> str | None:
    """The name the model calls a configured tool by (None: not a tool entry)."""
    tool_type = _tool_type(entry)
    if tool_type is None:
        return None
    name = entry.get("name")
    return name if isinstance(name, str) and name else tool_type.default_name


def validate_tools_config(entries: Any, *, previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools to store for an agent, secrets sealed, or a DRF ValidationError keyed by the
    entry's index and setting ({0: {"url": [...]}}). Each entry is {"type": one of BUILTIN,
    ...its settings}. `previous` is the agent's stored list: an entry's secret that an update
    leaves out is kept from the stored entry of the same type and name."""
    if not isinstance(entries, list):
        raise serializers.ValidationError("Expected a list of tools.")
    if len(entries) > MAX_TOOLS:
        raise serializers.ValidationError(f"At most {MAX_TOOLS} tools.")
    stored = {(entry["type"], tool_name(entry)): entry for entry in previous or [] if _tool_type(entry)}
    errors: dict[int, Any] = {}
    validated: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            errors[index] = ["Expected a JSON object."]
            continue
        tool_type = _tool_type(entry)
        if tool_type is None:
            errors[index] = {"type": [f"Expected one of: {', '.join(BUILTIN)}."]}
            continue
        kind = entry["type"]
        settings = {key: value for key, value in entry.items() if key != "type"}
        try:
            result = tool_type.validate_config(settings, previous=stored.get((kind, tool_name(entry))))
        except serializers.ValidationError as error:
            errors[index] = error.detail
            continue
        name = result.get("name") or tool_type.default_name
        if name in seen:
            errors[index] = {
                "name" if "name" in entry else "type": [
                    f"Another tool of this agent is already named {name!r}."
                ]
            }
            continue
        seen[name] = index
        validated.append({"type": kind, **result})
    if errors:
        raise serializers.ValidationError(errors)
    return validated


def public_tools_config(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored tools as APIs and pages may show them: secrets replaced by "secret_set"."""
    public = []
    for entry in entries:
        tool_type = _tool_type(entry)
        if tool_type is None:
            continue
        settings = {key: value for key, value in entry.items() if key != "type"}
        public.append({"type": entry["type"], **tool_type.public_config(settings)})
    return public


def server_tools_for(entries: list[dict[str, Any]]) -> dict[str, ServerTool]:
    """The runnable tools of an agent's stored configuration, by the name the model calls."""
    tools: dict[str, ServerTool] = {}
    for entry in entries or []:
        tool_type = _tool_type(entry)
        if tool_type is None:
            # The type only: an entry may hold secrets.
            kind = entry.get("type") if isinstance(entry, dict) else type(entry).__name__
            logger.warning("Skipping a stored tool entry of unknown type %r", kind)
            continue
        tool = tool_type.build({key: value for key, value in entry.items() if key != "type"})
        tools[tool.name] = tool
    return tools


def execute_tool_call(tools: dict[str, ServerTool], call: dict[str, Any], context: ToolContext) -> str:
    """The content of the `tool` message answering one OpenAI tool call
    ({"id", "type": "function", "function": {"name", "arguments": <JSON string>}}). Failures are
    answered as "error: ..." for the model to read; this never raises."""
    try:
        function = call.get("function") or {}
        name = function.get("name")
        tool = tools.get(name) if isinstance(name, str) else None
        if tool is None:
            available = ", ".join(sorted(tools)) or "none"
            return f"error: unknown tool {name!r}; available tools: {available}"
        arguments, problem = _parse_arguments(function.get("arguments"))
        if problem:
            return problem
        problem = _schema_problem(tool, arguments)
        if problem:
            return problem
        return tool.run(arguments, context)
    except ToolError as error:
        return f"error: {_shortened(str(error))}"
    except Exception:
        logger.exception(
            "Server tool %r failed (organization %s, agent %s, turn %s)",
            (call.get("function") or {}).get("name") if isinstance(call, dict) else None,
            context.organization,
            context.agent,
            context.turn_id,
        )
        return "error: the tool failed"


def _parse_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    if isinstance(raw, dict):
        return raw, None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        # Models send "" for a function without parameters.
        return {}, None
    if not isinstance(raw, str):
        return {}, "error: arguments must be a JSON object encoded as a string"
    try:
        arguments = json.loads(raw)
    except ValueError as error:
        return {}, f"error: arguments are not valid JSON: {_shortened(str(error))}"
    if not isinstance(arguments, dict):
        return {}, "error: arguments must be a JSON object"
    return arguments, None


def _schema_problem(tool: ServerTool, arguments: dict[str, Any]) -> str | None:
    schema = tool.definition()["function"].get("parameters") or {"type": "object"}
    error = jsonschema.exceptions.best_match(schema_errors(schema, arguments))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    message = f"{where}: {error.message}" if where else error.message
    return f"error: invalid arguments: {_shortened(message)}"


def _shortened(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_LENGTH else text[: _MAX_ERROR_LENGTH - 1] + "…"
