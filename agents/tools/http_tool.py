"""`http`: a tenant-defined tool served by the tenant's own HTTP endpoint.

Configuration: `name`, `description`, `parameters` (a JSON Schema for the arguments, an object
schema), `url`, `secret` (the signing secret: write-only, stored sealed; an update that leaves it
out keeps the stored one), `timeout` in seconds (default 10, at most 30).

Each call is POSTed as JSON:

    {"tool": name, "arguments": {...}, "context": {"organization", "agent", "session_id", "turn_id"}}

signed with the `Parley-Signature` header (agents.signing). The endpoint answers 2xx with
JSON — its `content` string is what the model reads, or else the whole JSON text — or with plain
text, read as is; any other status is told to the model as an error. Answers are capped at
256 KiB."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from rest_framework import serializers

from agents import egress, secrets
from agents.backends.base import validated_config
from agents.signing import SIGNATURE_HEADER, sign
from agents.tools import outbound
from agents.tools.base import ToolContext, ToolError, function_definition, tool_name_field
from agents.tools.schema_validation import schema_pattern_problem

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 30.0
MAX_RESPONSE_BYTES = 256 * 1024
MAX_SCHEMA_BYTES = 64 * 1024
_ERROR_EXCERPT = 300


class HttpTool:
    def __init__(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        url: str,
        sealed_secret: dict[str, str],
        timeout: float,
    ) -> None:
        self.name = name
        self.description = description
        self.parameters = parameters
        self.url = url
        self.sealed_secret = sealed_secret
        self.timeout = timeout

    def definition(self) -> dict[str, Any]:
        return function_definition(self.name, self.description, self.parameters)

    def request_body(self, arguments: dict[str, Any], context: ToolContext) -> bytes:
        payload = {
            "tool": self.name,
            "arguments": arguments,
            "context": {
                "organization": context.organization,
                "agent": context.agent,
                "session_id": context.session_id,
                "turn_id": context.turn_id,
            },
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        try:
            secret = secrets.unseal(self.sealed_secret)
        except ValueError:
            raise ToolError("the tool's signing secret cannot be read; set it again") from None
        body = self.request_body(arguments, context)
        fetched = outbound.fetch(
            "POST",
            self.url,
            timeout=self.timeout,
            max_bytes=MAX_RESPONSE_BYTES,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                SIGNATURE_HEADER: sign(secret, body),
            },
            content=body,
        )
        text = fetched.text()
        if not 200 <= fetched.status < 300:
            excerpt = text[:_ERROR_EXCERPT].strip()
            raise ToolError(
                f"the tool's endpoint answered HTTP {fetched.status}" + (f": {excerpt}" if excerpt else "")
            )
        try:
            answer = json.loads(text)
        except ValueError:
            return text
        if isinstance(answer, dict) and isinstance(answer.get("content"), str):
            return answer["content"]
        return text


class ParametersField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        schema = super().to_internal_value(data)
        if not isinstance(schema, dict):
            raise serializers.ValidationError("Expected a JSON Schema object.")
        if schema.get("type") != "object":
            raise serializers.ValidationError(
                'The arguments are an object: the schema needs "type": "object".'
            )
        if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
            raise serializers.ValidationError(f"The schema is larger than {MAX_SCHEMA_BYTES} bytes.")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise serializers.ValidationError(f"Not a valid JSON Schema: {error.message}") from None
        problem = schema_pattern_problem(schema)
        if problem:
            raise serializers.ValidationError(f"Not a valid JSON Schema: {problem}")
        return schema


class UrlField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        url = super().to_internal_value(data).strip()
        try:
            outbound.split_http_url(url)
        except ValueError as invalid:
            raise serializers.ValidationError(f"Not allowed: {invalid}.") from None
        try:
            egress.check_url(url)
        except egress.EgressRefused as refusal:
            raise serializers.ValidationError(refusal.message) from None
        return url


class HttpToolSettings(serializers.Serializer):
    name = tool_name_field(required=True)
    description = serializers.CharField(required=False, allow_blank=True, max_length=4096)
    parameters = ParametersField(required=False)
    url = UrlField(max_length=2048)
    # Required unless the stored entry has one (checked by HttpToolType.validate_config).
    secret = serializers.CharField(required=False, max_length=1024, trim_whitespace=False)
    timeout = serializers.FloatField(required=False, min_value=0.1, max_value=MAX_TIMEOUT)


EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class HttpToolType:
    default_name = None

    def validate_config(self, settings: dict[str, Any], *, previous: dict[str, Any] | None) -> dict[str, Any]:
        settings = dict(settings)
        settings.pop("secret_set", None)  # shown by public_config; sent back, it means nothing
        stored_secret = (previous or {}).get("secret")
        given = settings.get("secret")
        if given is not None and secrets.is_sealed(given):
            # Only the very value already stored (an unchanged entry validated again).
            if given != stored_secret:
                raise serializers.ValidationError({"secret": ["Expected the secret as a string."]})
            settings.pop("secret")
        validated = validated_config(HttpToolSettings, settings)
        if "secret" in validated:
            validated["secret"] = secrets.seal(validated["secret"])
        elif secrets.is_sealed(stored_secret):
            validated["secret"] = stored_secret
        else:
            raise serializers.ValidationError({"secret": ["This field is required."]})
        return validated

    def public_config(self, settings: dict[str, Any]) -> dict[str, Any]:
        public = {key: value for key, value in settings.items() if key != "secret"}
        public["secret_set"] = secrets.is_sealed(settings.get("secret"))
        return public

    def build(self, settings: dict[str, Any]) -> HttpTool:
        return HttpTool(
            settings["name"],
            settings.get("description", ""),
            settings.get("parameters", EMPTY_PARAMETERS),
            settings["url"],
            settings.get("secret") or {},
            settings.get("timeout", DEFAULT_TIMEOUT),
        )
