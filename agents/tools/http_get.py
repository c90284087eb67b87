"""`http_get`: fetch a URL on one of the hosts the agent allows.

Configuration: `allowed_hosts` (host names or IP addresses; `*.example.com` admits the
subdomains of example.com but not example.com itself), `max_bytes` (default 64 KiB, at most
1 MiB), `timeout` in seconds (default 10, at most 30). The request goes through the egress helper
like every outbound call, so an allowed host that resolves to an internal address is still
refused unless the operator allows it. Redirects are not followed: the model gets the status and
the `Location` and may fetch that URL in turn, which passes the host check again. A body over
the cap is an error, not a truncated answer the model could mistake for the whole page."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from rest_framework import serializers

from agents.backends.base import validated_config
from agents.tools import outbound
from agents.tools.base import ToolContext, ToolError, function_definition, tool_name_field

DEFAULT_MAX_BYTES = 64 * 1024
MAX_MAX_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 30.0
MAX_URL_LENGTH = 2048

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_HOST_PATTERN = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*\.?$")


def host_allowed(host: str, allowed_hosts: list[str]) -> bool:
    host = host.lower().rstrip(".")
    for allowed in allowed_hosts:
        allowed = allowed.lower().rstrip(".")
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]):
                return True
        elif host == allowed:
            return True
    return False


class HttpGetTool:
    def __init__(self, name: str, allowed_hosts: list[str], max_bytes: int, timeout: float) -> None:
        self.name = name
        self.allowed_hosts = allowed_hosts
        self.max_bytes = max_bytes
        self.timeout = timeout

    def definition(self) -> dict[str, Any]:
        description = (
            "Fetch a web page or API response with HTTP GET. Allowed hosts: "
            f"{', '.join(self.allowed_hosts)}. Returns the status, the content type and the body "
            f"(at most {self.max_bytes} bytes); redirects are not followed."
        )
        parameters = {
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "An http or https URL", "maxLength": MAX_URL_LENGTH}
            },
            "required": ["url"],
            "additionalProperties": False,
        }
        return function_definition(self.name, description, parameters)

    def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        url = arguments["url"].strip()
        try:
            _, host = outbound.split_http_url(url)
        except ValueError as invalid:
            raise ToolError(str(invalid)) from None
        if not host_allowed(host, self.allowed_hosts):
            raise ToolError(f"the host {host} is not allowed; allowed: {', '.join(self.allowed_hosts)}")
        fetched = outbound.fetch(
            "GET",
            url,
            timeout=self.timeout,
            max_bytes=self.max_bytes,
            headers={"Accept": "text/*, application/json;q=0.9, */*;q=0.5"},
        )
        return f"HTTP {fetched.status}\nContent-Type: {fetched.content_type or 'unknown'}\n\n{fetched.text()}"


class HostField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        host = super().to_internal_value(data).strip().lower()
        try:
            return str(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            pass
        if not _HOST_PATTERN.match(host):
            raise serializers.ValidationError(
                f"{host!r} is not a host name (no scheme, port or path; *.example.com for subdomains)."
            )
        return host.rstrip(".")


class HttpGetSettings(serializers.Serializer):
    name = tool_name_field(required=False)
    allowed_hosts = serializers.ListField(child=HostField(max_length=253), allow_empty=False, max_length=100)
    max_bytes = serializers.IntegerField(required=False, min_value=1, max_value=MAX_MAX_BYTES)
    timeout = serializers.FloatField(required=False, min_value=0.1, max_value=MAX_TIMEOUT)


class HttpGet:
    default_name = "http_get"

    def validate_config(self, settings: dict[str, Any], *, previous: dict[str, Any] | None) -> dict[str, Any]:
        return validated_config(HttpGetSettings, settings)

    def public_config(self, settings: dict[str, Any]) -> dict[str, Any]:
        return dict(settings)

    def build(self, settings: dict[str, Any]) -> HttpGetTool:
        return HttpGetTool(
            settings.get("name", self.default_name),
            list(settings["allowed_hosts"]),
            settings.get("max_bytes", DEFAULT_MAX_BYTES),
            settings.get("timeout", DEFAULT_TIMEOUT),
        )
