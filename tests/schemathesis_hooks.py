"""Schemathesis hooks of tests/test_schemathesis.py (named by tests/schemathesis.toml).

The run creates and changes agents with generated configurations: `openai` and `webhook`
backends with generated base URLs, `http` tools with generated URLs, `http_get` tools with
generated host names. Saving such an agent already makes the server look up the host name (the
egress check), and a public address would be allowed. So before any request leaves, every URL in
an agent body is pointed at a loopback port where nothing listens, and every allowed host is the
loopback address: the server under test never looks up or calls anything but loopback."""

from __future__ import annotations

from typing import Any

import schemathesis

# The discard port: nothing listens on it here, so a call is refused at once.
LOOPBACK_URL = "http://127.0.0.1:9/"
LOOPBACK_HOST = "127.0.0.1"
AGENT_PATHS = ("/v1/agents", "/v1/agents/{slug}")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.path not in AGENT_PATHS or not isinstance(case.body, dict | list | str):
        return
    body = on_loopback(case.body)
    if body != case.body:  # an assignment makes schemathesis check the case again
        case.body = body


def on_loopback(value: Any) -> Any:
    """`value` with every string that holds a URL (any `scheme://`) replaced by LOOPBACK_URL and
    every `allowed_hosts` entry by LOOPBACK_HOST."""
    if isinstance(value, str):
        return LOOPBACK_URL if "://" in value else value
    if isinstance(value, list):
        return [on_loopback(item) for item in value]
    if isinstance(value, dict):
        return {
            key: [LOOPBACK_HOST for _ in item]
            if key == "allowed_hosts" and isinstance(item, list)
            else on_loopback(item)
            for key, item in value.items()
        }
    return value
