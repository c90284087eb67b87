"""Every way a chat request names a session, for the tests of session ids (test_session_ids.py)
and of isolation (test_isolation.py)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Tenant
from tests.live import Stack

# Every way a chat request names a session.
WAYS = [
    "session_id",
    "conversation_id",
    "thread_id",
    "conversation",
    "conversation-object",
    "agent:session",
    "nlx",
]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def session_not_found(session_id: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"No session found with id '{session_id}'.",
            "type": "invalid_request_error",
            "param": "session_id",
            "code": "session_not_found",
        }
    }


def ask(stack: Stack, tenant: Tenant, fields: dict[str, Any], *, stream: bool, nlx: bool = False):
    """A chat request with these extra fields (naming a session, say); a stream when `stream`."""
    body = {"model": "echo", "messages": [user("are you there?")], "stream": stream, **fields}
    url = f"{stack.url}/echo/web-en-US/chat/completions" if nlx else f"{stack.api_url}/chat/completions"
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=30)


def ask_naming(stack: Stack, tenant: Tenant, way: str, session_id: str, *, stream: bool) -> httpx.Response:
    fields: dict[str, Any] = {
        "conversation-object": {"conversation": {"id": session_id}},
        "agent:session": {"model": f"echo:{session_id}"},
        "nlx": {"model": f"nlx:{session_id}"},
    }.get(way, {way: session_id})
    return ask(stack, tenant, fields, stream=stream, nlx=way == "nlx")
