"""Every error on an API path is JSON in OpenAI's envelope, never Django's HTML page: unknown
paths, wrong methods, bodies that are not JSON or too large, bad credentials (checked before the
body), and real server faults. Every answer carries a request id.

Input the database cannot take or the parser cannot survive is a 4xx on every endpoint, in both
run modes, and changes nothing: bodies nested deeper than 64 levels, NUL and lone surrogates in any
string, ids in paths that no id can be, query parameters and headers holding a NUL, digits of
another script or out-of-range dates."""

from __future__ import annotations

import http.client
import json
import re
import select
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from django.utils import timezone

from accounts.models import ApiKey, AutomationSettings, Membership
from accounts.services import api_key_create, api_key_revoke
from agents.models import Agent
from sessions.models import Session, Turn
from tests.conftest import Person, Tenant, stored_rows
from tests.live import Stack

USER_HI = {"role": "user", "content": "hi"}
ECHO_OF_HI = "You said: hi\n(1 message in context)"
CHAT_PATHS = ["/v1/chat/completions", "/api/v1/chat/completions", "/api/ai/chat/completions"]
# What a well-formed request id looks like (the server makes one when the client sends none).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
MAX_BODY_BYTES = 4 * 1024 * 1024


def chat_body(**changes: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [USER_HI], "session_id": f"s-{uuid.uuid4().hex}", **changes}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def envelope(response: httpx.Response) -> dict[str, Any]:
    """The error of a JSON envelope answer, after checking its shape."""
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:500]
    assert "<html" not in response.text.lower()
    payload = response.json()
    assert set(payload) <= {"error", "detail"}
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert isinstance(payload["error"]["message"], str)
    assert payload["error"]["message"]
    return payload["error"]


def unknown_key() -> str:
    return "sk-parley-" + uuid.uuid4().hex + uuid.uuid4().hex[:20]


# --- paths and methods ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/v1/nope", "/v1/chat/completions/extra", "/api/nope"])
def test_unknown_api_path_answers_a_json_404_envelope(
    stack: Stack, tenant: Tenant, path: str, method: str
) -> None:
    response = httpx.request(method, f"{stack.url}{path}", headers=bearer(tenant.key), json={}, timeout=30)

    assert response.status_code == 404
    error = envelope(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "not_found")


@pytest.mark.parametrize("path", CHAT_PATHS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_method_than_post_on_chat_completions_answers_a_json_405_envelope(
    stack: Stack, tenant: Tenant, path: str, method: str
) -> None:
    response = httpx.request(method, f"{stack.url}{path}", headers=bearer(tenant.key), timeout=30)

    assert response.status_code == 405
    error = envelope(response)
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        None,
        "method_not_allowed",
    )
    assert response.headers["Allow"] == "POST"
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


# --- bodies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"model": "echo", "messages": [', id="truncated"),
        pytest.param(b"model=echo&messages=hi", id="form-encoded"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(
            b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
            id="nan-literal",
        ),
        pytest.param(
            b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}',
            id="infinity-literal",
        ),
        pytest.param(b"", id="empty"),
        pytest.param(b"  \n ", id="whitespace-only"),
        pytest.param(b"[]", id="an-array"),
        pytest.param(b'"hello"', id="a-string"),
        pytest.param(b"null", id="null"),
        pytest.param(
            b'{"model": "echo", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',
            id="a-surrogate-encoded-in-utf8-bytes",
        ),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100000-deep"),
        pytest.param(b"[" * 100_000, id="opened-100000-deep-and-never-closed"),
    ],
)
def test_body_that_is_not_a_json_object_is_refused_with_invalid_json_and_nothing_is_stored(
    stack: Stack, tenant: Tenant, raw: bytes
) -> None:
    # given
    before = stored_rows(tenant)
    # when
    response = httpx.post(
        f"{stack.api_url}/chat/completions",
        content=raw,
        headers={**bearer(tenant.key), "Content-Type": "application/json"},
        timeout=30,
    )
    # then
    assert response.status_code == 400, response.text
    error = envelope(response)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "invalid_json")
    assert stored_rows(tenant) == before


def test_body_over_the_size_limit_answers_413_in_json_and_nothing_is_stored(
    stack: Stack, tenant: Tenant
) -> None:
    # given: valid JSON of about 5 MiB, over the default limit of 4 MiB
    body = chat_body(messages=[{"role": "user", "content": "x" * (5 * 1024 * 1024)}])
    before = stored_rows(tenant)
    with httpx.Client(timeout=60) as http:
        # when
        response = http.post(f"{stack.api_url}/chat/completions", json=body, headers=bearer(tenant.key))
        # then: an answer, not a reset connection, and the server still serves the next request
        assert response.status_code == 413
        error = envelope(response)
        assert (error["type"], error["param"], error["code"]) == (
            "invalid_request_error",
            None,
            "request_too_large",
        )
        assert str(MAX_BODY_BYTES) in error["message"]
        after = http.post(f"{stack.api_url}/chat/completions", json=chat_body(), headers=bearer(tenant.key))
        assert after.status_code == 200, after.text
    assert stored_rows(tenant) == {
        "sessions": before["sessions"] + 1,
        "turns": before["turns"] + 1,
        "messages": before["messages"] + 2,
    }
    assert not Session.objects.filter(
        organization=tenant.organization, external_id=body["session_id"]
    ).exists()


# --- bodies are capped while read, and read only after authentication -----------------------------


def sized_chat_body(size: int) -> bytes:
    """A valid chat request of exactly `size` bytes (an unknown field pads it; unknown fields are
    ignored)."""
    body = chat_body(padding="")
    padding = size - len(json.dumps(body).encode())
    assert padding >= 0
    return json.dumps({**body, "padding": "x" * padding}).encode()


def chunked(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@contextmanager
def raw_connection(stack: Stack) -> Iterator[socket.socket]:
    """A plain TCP connection to the live server; every read and write within 10 s."""
    port = int(stack.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        yield sock


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk_frame(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, Any]]:
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    return (
        answer.status,
        {name.lower(): value for name, value in answer.getheaders()},
        json.loads(answer.read()),
    )


def assert_closed(sock: socket.socket) -> None:
    """The server hung up: it will not read the rest of the body."""
    with suppress(ConnectionResetError):  # a reset, when what the client sent was left unread
        assert sock.recv(1) == b""


def too_large() -> dict[str, Any]:
    return {
        "error": {
            "message": f"The request body is larger than the limit of {MAX_BODY_BYTES} bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }


@pytest.mark.parametrize(
    ("headers", "code", "message"),
    [
        pytest.param(
            {},
            "missing_api_key",
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            id="no-key",
        ),
        pytest.param(
            {"Authorization": "Bearer sk-parley-unknown000000000000"},
            "invalid_api_key",
            "Incorrect, revoked or expired API key provided.",
            id="bad-key",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/agents", "/v1/sessions"])
def test_an_unauthenticated_chunked_upload_is_refused_before_its_body_is_read(
    stack: Stack, tenant: Tenant, headers: dict[str, str], code: str, message: str, path: str
) -> None:
    # given a chunked upload meant to be far larger than the limit, of which only a first chunk
    # is sent
    with raw_connection(stack) as sock:
        sock.sendall(request_head(path, {**headers, "Transfer-Encoding": "chunked"}))
        sock.sendall(chunk_frame(b"x" * 65536))
        # when the client waits (the body has not ended: an answer cannot have waited for it)
        status, answer_headers, body = read_answer(sock)
        # then the 401, and the server takes nothing more
        assert_closed(sock)
    assert status == 401
    assert body == {
        "error": {"message": message, "type": "authentication_error", "param": None, "code": code}
    }
    assert answer_headers["connection"] == "close"
    assert REQUEST_ID.match(answer_headers["x-request-id"])
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_an_authenticated_chunked_body_over_the_limit_is_refused_once_it_passes_it(
    stack: Stack, tenant: Tenant
) -> None:
    # given an authenticated chunked upload that goes on past the limit and never ends
    deadline = time.monotonic() + 30
    sent = 0
    with raw_connection(stack) as sock:
        sock.sendall(
            request_head("/v1/chat/completions", {**bearer(tenant.key), "Transfer-Encoding": "chunked"})
        )
        piece = b"x" * (256 * 1024)
        try:
            while sent <= MAX_BODY_BYTES + 4 * len(piece) and time.monotonic() < deadline:
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer came
                sock.sendall(chunk_frame(piece))
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server stopped reading: its answer is waiting
        # when the client reads the answer
        status, answer_headers, body = read_answer(sock)
    # then a 413, without the body ever having ended
    assert (status, body) == (413, too_large())
    assert answer_headers["connection"] == "close"
    assert sent > MAX_BODY_BYTES
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


@pytest.mark.parametrize("authenticated", [True, False], ids=["with-key", "without-key"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    stack: Stack, tenant: Tenant, authenticated: bool
) -> None:
    headers = {"Content-Length": str(MAX_BODY_BYTES + 1), **(bearer(tenant.key) if authenticated else {})}
    with raw_connection(stack) as sock:
        # when only the headers are sent
        sock.sendall(request_head("/v1/chat/completions", headers))
        status, _, body = read_answer(sock)
    # then a key is checked first, then the size
    if authenticated:
        assert (status, body) == (413, too_large())
    else:
        assert status == 401
        assert body["error"]["code"] == "missing_api_key"
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_served_and_one_byte_more_is_413(
    stack: Stack, tenant: Tenant, transfer: str
) -> None:
    at_limit, over_limit = sized_chat_body(MAX_BODY_BYTES), sized_chat_body(MAX_BODY_BYTES + 1)
    with httpx.Client(timeout=60, headers={**bearer(tenant.key), "Content-Type": "application/json"}) as http:
        # when
        if transfer == "chunked":
            served = http.post(f"{stack.api_url}/chat/completions", content=chunked(at_limit))
            refused = http.post(f"{stack.api_url}/chat/completions", content=chunked(over_limit))
        else:
            served = http.post(f"{stack.api_url}/chat/completions", content=at_limit)
            refused = http.post(f"{stack.api_url}/chat/completions", content=over_limit)
    # then
    assert served.status_code == 200, served.text[:500]
    assert served.json()["choices"][0]["message"]["content"] == ECHO_OF_HI
    assert (refused.status_code, refused.json()) == (413, too_large())
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}


# --- authentication ------------------------------------------------------------------------------


def assert_unauthenticated(response: httpx.Response, *, code: str) -> None:
    assert response.status_code == 401, response.text
    error = envelope(response)
    assert (error["type"], error["param"], error["code"]) == ("authentication_error", None, code)


def test_missing_authorization_header_is_refused_with_missing_api_key(stack: Stack, tenant: Tenant) -> None:
    response = httpx.post(f"{stack.api_url}/chat/completions", json=chat_body(), timeout=30)

    assert_unauthenticated(response, code="missing_api_key")
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_unknown_api_key_is_refused(stack: Stack, tenant: Tenant) -> None:
    response = httpx.post(
        f"{stack.api_url}/chat/completions", json=chat_body(), headers=bearer(unknown_key()), timeout=30
    )

    assert_unauthenticated(response, code="invalid_api_key")
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_key_with_a_known_prefix_and_a_wrong_secret_is_refused(stack: Stack, tenant: Tenant) -> None:
    forged = tenant.api_key.prefix + "x" * 40

    response = httpx.post(
        f"{stack.api_url}/chat/completions", json=chat_body(), headers=bearer(forged), timeout=30
    )

    assert_unauthenticated(response, code="invalid_api_key")
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_revoked_api_key_is_refused(stack: Stack, tenant: Tenant) -> None:
    # given
    api_key_revoke(api_key=tenant.api_key)
    # when
    response = httpx.post(
        f"{stack.api_url}/chat/completions", json=chat_body(), headers=bearer(tenant.key), timeout=30
    )
    # then
    assert_unauthenticated(response, code="invalid_api_key")
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_expired_api_key_is_refused(stack: Stack, tenant: Tenant) -> None:
    # given
    expired = api_key_create(
        organization=tenant.organization, name="expired", expires_at=timezone.now() - timedelta(minutes=1)
    )
    # when
    response = httpx.post(
        f"{stack.api_url}/chat/completions", json=chat_body(), headers=bearer(expired.secret), timeout=30
    )
    # then
    assert_unauthenticated(response, code="invalid_api_key")
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Basic xyz", id="basic-scheme"),
        pytest.param("Bearer", id="bearer-without-token"),
        pytest.param("{key}", id="key-without-scheme"),
        pytest.param("Token {key}", id="valid-key-under-another-scheme"),
    ],
)
def test_malformed_authorization_header_is_refused(stack: Stack, tenant: Tenant, header: str) -> None:
    response = httpx.post(
        f"{stack.api_url}/chat/completions",
        json=chat_body(),
        headers={"Authorization": header.format(key=tenant.key)},
        timeout=30,
    )

    assert_unauthenticated(response, code="invalid_api_key")
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "missing_api_key", id="no-key"),
        pytest.param(
            {"Authorization": "Bearer sk-parley-unknown000000000000"}, "invalid_api_key", id="bad-key"
        ),
    ],
)
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(
            b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": 2.5, '
            b'"session_id": "never-created"}',
            id="temperature-out-of-range",
        ),
        pytest.param(b'{"messages": []}', id="missing-model-and-empty-messages"),
        pytest.param(b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="nested-100000-deep"),
        pytest.param(b'{"model": "echo\\u0000", "messages": []}', id="nul-in-a-string"),
    ],
)
def test_credentials_are_checked_before_the_body_so_a_bad_key_with_an_invalid_body_gets_401(
    stack: Stack, tenant: Tenant, headers: dict[str, str], code: str, raw: bytes
) -> None:
    # given
    before = stored_rows(tenant)
    # when
    response = httpx.post(
        f"{stack.api_url}/chat/completions",
        content=raw,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )
    # then
    assert_unauthenticated(response, code=code)
    assert "detail" not in response.json()
    assert stored_rows(tenant) == before
    assert not Session.objects.filter(external_id="never-created").exists()


# --- what a request may hold: nesting, stored text, ids, query parameters, headers ---------------

MAX_JSON_DEPTH = 64  # as the README documents it


def nested_body(depth: int) -> bytes:
    """A JSON object holding arrays nested so that the whole is `depth` levels deep."""
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def tenant_state(tenant: Tenant) -> dict[str, Any]:
    """Everything a request of the tenant could store or change."""
    organization = tenant.organization
    return {
        **stored_rows(tenant),
        "sessions_seen": list(
            Session.objects.filter(organization=organization)
            .order_by("pk")
            .values_list("external_id", "title", "metadata")
        ),
        "agents": list(
            Agent.objects.filter(organization=organization)
            .order_by("pk")
            .values_list(
                "slug", "name", "system_prompt", "backend_config", "default_params", "tools", "enabled"
            )
        ),
        "api_keys": list(
            ApiKey.objects.filter(organization=organization)
            .order_by("pk")
            .values_list("pk", "name", "revoked_at")
        ),
        "members": list(
            Membership.objects.filter(organization=organization).order_by("pk").values_list("user_id", "role")
        ),
        "settings": list(AutomationSettings.objects.filter(organization=organization).values()),
    }


@dataclass
class Callers:
    """The credentials each endpoint is called with, and ids of objects that exist."""

    headers: dict[str, dict[str, str]]
    ids: dict[str, str]


@pytest.fixture
def callers(stack: Stack, tenant: Tenant, org_owner: Person, org_member: Person) -> Callers:
    created = httpx.post(
        f"{stack.api_url}/sessions", json={"id": "kept"}, headers=bearer(tenant.key), timeout=30
    )
    assert created.status_code == 201, created.text
    signed_in = httpx.post(
        f"{stack.api_url}/auth/token",
        json={"username": org_owner.user.username, "password": org_owner.password},
        timeout=30,
    )
    assert signed_in.status_code == 200, signed_in.text
    return Callers(
        headers={"key": bearer(tenant.key), "owner": bearer(signed_in.json()["access"]), "nobody": {}},
        ids={"session": "kept", "member": str(org_member.user.pk)},
    )


def call(stack: Stack, callers: Callers, method: str, path: str, who: str, body: bytes) -> httpx.Response:
    return httpx.request(
        method,
        f"{stack.url}{path.format(**callers.ids)}",
        content=body,
        headers={**callers.headers[who], "Content-Type": "application/json"},
        timeout=30,
    )


# Every endpoint that reads a JSON body, with who may call it.
JSON_ENDPOINTS = [
    pytest.param("POST", "/v1/chat/completions", "key", id="chat"),
    pytest.param("POST", "/api/ai/chat/completions", "key", id="chat-alias"),
    pytest.param("POST", "/echo/web-en-US/chat/completions", "key", id="nlx-chat"),
    pytest.param("POST", "/v1/sessions", "key", id="create-session"),
    pytest.param("PATCH", "/v1/sessions/{session}", "key", id="update-session"),
    pytest.param("POST", "/v1/sessions/{session}/fork", "key", id="fork-session"),
    pytest.param("POST", "/v1/agents", "key", id="create-agent"),
    pytest.param("PATCH", "/v1/agents/echo", "key", id="update-agent"),
    pytest.param("PUT", "/v1/settings/automation", "key", id="automation-settings"),
    pytest.param("POST", "/v1/api-keys", "key", id="create-api-key"),
    pytest.param("POST", "/v1/members", "owner", id="add-member"),
    pytest.param("PATCH", "/v1/members/{member}", "owner", id="change-member"),
    pytest.param("POST", "/v1/auth/token", "nobody", id="token"),
    pytest.param("POST", "/v1/auth/token/refresh", "nobody", id="token-refresh"),
    pytest.param("POST", "/v1/auth/token/verify", "nobody", id="token-verify"),
    pytest.param("POST", "/v1/auth/logout", "owner", id="logout"),
]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize(("method", "path", "who"), JSON_ENDPOINTS)
def test_a_body_nested_deeper_than_the_limit_is_invalid_json_naming_the_limit_and_changes_nothing(
    stack: Stack, tenant: Tenant, callers: Callers, method: str, path: str, who: str, depth: int
) -> None:
    # given
    before = tenant_state(tenant)
    # when
    response = call(stack, callers, method, path, who, nested_body(depth))
    # then
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": f"The request body nests arrays and objects {depth} levels deep; the limit is 64.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_json",
        }
    }
    assert tenant_state(tenant) == before


def test_a_body_nested_exactly_to_the_limit_is_served_and_brackets_in_strings_do_not_count(
    stack: Stack, tenant: Tenant
) -> None:
    # given: tool parameters whose innermost object is at level 64 (body 1, tools 2, the tool 3,
    # function 4, parameters 5, then 59 more), and a message of 1,000 brackets
    parameters: dict[str, Any] = {}
    for _ in range(59):
        parameters = {"a": parameters}
    tool = {"type": "function", "function": {"name": "deep", "parameters": parameters}}
    text = "[{" * 500
    body = chat_body(messages=[{"role": "user", "content": text}], tools=[tool])
    # when
    response = httpx.post(
        f"{stack.api_url}/chat/completions", json=body, headers=bearer(tenant.key), timeout=30
    )
    # then
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == f"You said: {text}\n(1 message in context)"
    assert Turn.objects.get(organization=tenant.organization).params["tools"] == [tool]


def test_an_agent_whose_default_params_hold_a_schema_nested_900_levels_is_refused_and_not_stored(
    stack: Stack, tenant: Tenant
) -> None:
    # given: the schema object is at level 5 (body, default_params, response_format, json_schema),
    # with 900 objects nested in it
    schema: dict[str, Any] = {}
    for _ in range(900):
        schema = {"items": schema}
    body = {
        "slug": "deep",
        "backend": "echo",
        "default_params": {
            "response_format": {"type": "json_schema", "json_schema": {"name": "deep", "schema": schema}}
        },
    }
    before = tenant_state(tenant)
    # when
    response = httpx.post(f"{stack.api_url}/agents", json=body, headers=bearer(tenant.key), timeout=30)
    # then
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "message": "The request body nests arrays and objects 905 levels deep; the limit is 64.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_json",
    }
    assert tenant_state(tenant) == before
    assert not Agent.objects.filter(slug="deep").exists()


NUL_RULE = ("Null characters are not allowed.", "null_characters_not_allowed")
SURROGATE_RULE = ("Surrogate characters are not allowed: U+D800.", "surrogate_characters_not_allowed")
KEY_NUL_RULE = (
    "A key of this object is invalid. Null characters are not allowed.",
    "null_characters_not_allowed",
)


def text_case(
    method: str, path: str, who: str, body: str, loc: tuple, rule: tuple[str, str], *, id: str
) -> Any:
    return pytest.param(method, path, who, body.encode("ascii"), loc, rule, id=id)


# A NUL or a lone surrogate (sent as JSON escapes) in a string of every endpoint but chat's
# (tests/test_validation.py has those): named by its place, nothing changed.
STORED_TEXT_CASES = [
    text_case("POST", "/v1/sessions", "key", r'{"id": "ticket\u0000"}', ("id",), NUL_RULE, id="session-id"),
    text_case(
        "POST", "/v1/sessions", "key", r'{"title": "\ud800"}', ("title",), SURROGATE_RULE, id="session-title"
    ),
    text_case(
        "POST",
        "/v1/sessions",
        "key",
        r'{"metadata": {"channel": "e\u0000mail"}}',
        ("metadata", "channel"),
        NUL_RULE,
        id="session-metadata-value",
    ),
    text_case(
        "POST",
        "/v1/sessions",
        "key",
        r'{"metadata": {"\u0000": "v"}}',
        ("metadata",),
        KEY_NUL_RULE,
        id="session-metadata-key",
    ),
    text_case(
        "POST", "/v1/sessions", "key", r'{"agent": "echo\u0000"}', ("agent",), NUL_RULE, id="session-agent"
    ),
    text_case(
        "PATCH",
        "/v1/sessions/{session}",
        "key",
        r'{"title": "\u0000"}',
        ("title",),
        NUL_RULE,
        id="update-title",
    ),
    text_case(
        "PATCH",
        "/v1/sessions/{session}",
        "key",
        r'{"metadata": {"k": "\udfff"}}',
        ("metadata", "k"),
        ("Surrogate characters are not allowed: U+DFFF.", "surrogate_characters_not_allowed"),
        id="update-metadata-low-surrogate",
    ),
    text_case(
        "POST",
        "/v1/sessions/{session}/fork",
        "key",
        r'{"messages": 1, "id": "copy\u0000"}',
        ("id",),
        NUL_RULE,
        id="fork-id",
    ),
    text_case(
        "POST",
        "/v1/agents",
        "key",
        r'{"slug": "a\u0000", "backend": "echo"}',
        ("slug",),
        NUL_RULE,
        id="agent-slug",
    ),
    text_case(
        "POST",
        "/v1/agents",
        "key",
        r'{"slug": "x", "backend": "echo", "system_prompt": "Be kind.\ud800"}',
        ("system_prompt",),
        SURROGATE_RULE,
        id="agent-system-prompt",
    ),
    text_case(
        "POST",
        "/v1/agents",
        "key",
        r'{"slug": "x", "backend": "openai", "backend_config": {"base_url": "http://127.0.0.1/\u0000"}}',
        ("backend_config", "base_url"),
        NUL_RULE,
        id="agent-backend-config",
    ),
    text_case(
        "POST",
        "/v1/agents",
        "key",
        r'{"slug": "x", "backend": "echo", "tools": [{"type": "calculator", "description": "\u0000"}]}',
        ("tools", 0, "description"),
        NUL_RULE,
        id="agent-tool",
    ),
    text_case(
        "POST",
        "/v1/agents",
        "key",
        r'{"slug": "x", "backend": "echo", "default_params": {"stop": ["\ud800"]}}',
        ("default_params", "stop", 0),
        SURROGATE_RULE,
        id="agent-default-params",
    ),
    text_case(
        "PATCH",
        "/v1/agents/echo",
        "key",
        r'{"name": "Echo\u0000"}',
        ("name",),
        NUL_RULE,
        id="update-agent-name",
    ),
    text_case(
        "PUT",
        "/v1/settings/automation",
        "key",
        r'{"default_agent": "\u0000"}',
        ("default_agent",),
        NUL_RULE,
        id="default-agent",
    ),
    text_case("POST", "/v1/api-keys", "key", r'{"name": "ci\u0000"}', ("name",), NUL_RULE, id="api-key-name"),
    text_case(
        "POST",
        "/v1/api-keys",
        "key",
        r'{"name": "ci", "scopes": ["chat\u0000"]}',
        ("scopes", 0),
        NUL_RULE,
        id="api-key-scope",
    ),
    text_case(
        "POST",
        "/v1/api-keys",
        "key",
        r'{"name": "ci", "expires_at": "2099-01-01T00:00:00Z\ud800"}',
        ("expires_at",),
        SURROGATE_RULE,
        id="api-key-expiry",
    ),
    text_case(
        "POST",
        "/v1/members",
        "owner",
        r'{"username": "\u0000"}',
        ("username",),
        NUL_RULE,
        id="member-username",
    ),
    text_case(
        "POST",
        "/v1/members",
        "owner",
        r'{"email": "a@example.com\ud800"}',
        ("email",),
        SURROGATE_RULE,
        id="member-email",
    ),
    text_case(
        "PATCH",
        "/v1/members/{member}",
        "owner",
        r'{"role": "owner\u0000"}',
        ("role",),
        NUL_RULE,
        id="member-role",
    ),
    text_case(
        "POST",
        "/v1/auth/token",
        "nobody",
        r'{"username": "admin\u0000", "password": "x"}',
        ("username",),
        NUL_RULE,
        id="token-username",
    ),
    text_case(
        "POST",
        "/v1/auth/token",
        "nobody",
        r'{"username": "admin", "password": "\ud800"}',
        ("password",),
        SURROGATE_RULE,
        id="token-password",
    ),
    text_case(
        "POST",
        "/v1/auth/token/refresh",
        "nobody",
        r'{"refresh": "\u0000"}',
        ("refresh",),
        NUL_RULE,
        id="refresh",
    ),
    text_case(
        "POST",
        "/v1/auth/token/verify",
        "nobody",
        r'{"token": "\ud800"}',
        ("token",),
        SURROGATE_RULE,
        id="verify",
    ),
    text_case(
        "POST", "/v1/auth/logout", "owner", r'{"refresh": "\u0000"}', ("refresh",), NUL_RULE, id="logout"
    ),
    text_case(
        "POST",
        "/echo/web-en-US/chat/completions",
        "key",
        r'{"messages": [{"role": "user", "content": "\u0000"}]}',
        ("messages", 0, "content"),
        NUL_RULE,
        id="nlx-chat-content",
    ),
]


@pytest.mark.parametrize(("method", "path", "who", "body", "loc", "rule"), STORED_TEXT_CASES)
def test_nul_or_lone_surrogate_in_a_string_is_refused_naming_the_field_and_changes_nothing(
    stack: Stack,
    tenant: Tenant,
    callers: Callers,
    method: str,
    path: str,
    who: str,
    body: bytes,
    loc: tuple,
    rule: tuple[str, str],
) -> None:
    # given
    before = tenant_state(tenant)
    message, kind = rule
    param = loc[0] + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    # when
    response = call(stack, callers, method, path, who, body)
    # then
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": f"Invalid value for '{param}': {message}",
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_value",
        },
        "detail": [{"loc": ["body", *loc], "msg": message, "type": kind}],
    }
    assert tenant_state(tenant) == before


# Every path that holds an id: an id no object can have is a 404 before any view runs.
PATH_ID_ENDPOINTS = [
    ("GET", "/v1/sessions/{}"),
    ("PATCH", "/v1/sessions/{}"),
    ("DELETE", "/v1/sessions/{}"),
    ("GET", "/v1/sessions/{}/export"),
    ("POST", "/v1/sessions/{}/fork"),
    ("GET", "/v1/turns/{}"),
    ("GET", "/v1/turns/{}/events"),
    ("POST", "/v1/turns/{}/cancel"),
    ("GET", "/v1/agents/{}"),
    ("PATCH", "/v1/agents/{}"),
    ("DELETE", "/v1/agents/{}"),
    ("GET", "/v1/models/{}"),
    ("GET", "/v1/api-keys/{}"),
    ("DELETE", "/v1/api-keys/{}"),
    ("GET", "/v1/members/{}"),
    ("PATCH", "/v1/members/{}"),
    ("DELETE", "/v1/members/{}"),
    ("POST", "/{}/web-en-US/chat/completions"),
    ("POST", "/echo/{}/chat/completions"),
]
IMPOSSIBLE_IDS = [
    pytest.param("%00", id="nul"),
    pytest.param("sess%00ion", id="nul-inside"),
    pytest.param("%C2%B2", id="superscript-two"),
    pytest.param("1%C2%B2", id="digit-and-superscript-two"),
    pytest.param("two%20words", id="space"),
    pytest.param("x" * 129, id="129-characters"),
]


@pytest.mark.parametrize("raw_id", IMPOSSIBLE_IDS)
@pytest.mark.parametrize(("method", "template"), PATH_ID_ENDPOINTS)
def test_an_id_in_a_path_that_no_object_can_have_is_a_404_envelope_and_changes_nothing(
    stack: Stack, tenant: Tenant, method: str, template: str, raw_id: str
) -> None:
    # given
    path = template.format(raw_id)
    before = tenant_state(tenant)
    # when
    response = httpx.request(method, f"{stack.url}{path}", headers=bearer(tenant.key), json={}, timeout=30)
    # then
    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": {
            "message": f"Unknown path: {method} {unquote(path)}",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    }
    assert tenant_state(tenant) == before


@pytest.mark.parametrize(
    ("path", "query", "param"),
    [
        pytest.param("/v1/sessions", "after=%00", "after", id="after-nul"),
        pytest.param("/v1/sessions", "user=customer%00", "user", id="user-nul"),
        pytest.param("/v1/sessions", "agent=echo%00", "agent", id="agent-nul"),
        pytest.param("/v1/sessions", "metadata[channel]=%00", "metadata[channel]", id="metadata-value-nul"),
        pytest.param("/v1/sessions", "metadata[%00]=email", "metadata", id="metadata-key-nul"),
        pytest.param("/v1/sessions", "limit=%C2%B2", "limit", id="limit-superscript-two"),
        pytest.param("/v1/sessions", "limit=1%C2%B2", "limit", id="limit-digit-and-superscript-two"),
        pytest.param("/v1/sessions", "limit=1e400", "limit", id="limit-1e400"),
        pytest.param("/v1/sessions", "limit=" + "9" * 400, "limit", id="limit-400-digits"),
        pytest.param("/v1/sessions", "created_after=%00", "created_after", id="created-after-nul"),
        pytest.param("/v1/sessions", "created_before=1e400", "created_before", id="created-before-1e400"),
        pytest.param("/v1/usage", "start=9999-12-01&end=9999-12-31", "end", id="usage-end-at-the-last-date"),
        pytest.param("/v1/usage", "end=0001-01-02", "end", id="usage-end-in-year-1"),
        pytest.param("/v1/usage", "start=%C2%B2", "start", id="usage-start-superscript-two"),
        pytest.param(
            "/v1/usage",
            "start=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%95-01-01",
            "start",
            id="usage-start-fullwidth-digits",
        ),
        pytest.param("/v1/usage", "group_by=%00", "group_by", id="usage-group-by-nul"),
    ],
)
def test_a_query_parameter_holding_what_no_value_can_be_is_a_400_naming_it(
    stack: Stack, tenant: Tenant, path: str, query: str, param: str
) -> None:
    # given
    before = tenant_state(tenant)
    # when
    response = httpx.get(f"{stack.url}{path}?{query}", headers=bearer(tenant.key), timeout=30)
    # then
    assert response.status_code == 400, response.text
    error = envelope(response)
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "invalid_request",
    )
    assert tenant_state(tenant) == before


@pytest.mark.parametrize(
    "last_event_id",
    [
        pytest.param("\u00b2".encode(), id="superscript-two"),
        pytest.param("1\u00b2".encode(), id="digit-and-superscript-two"),
        pytest.param(b"1" * 19, id="19-digits"),
        pytest.param(b"-1", id="negative"),
        pytest.param(b"1e400", id="1e400"),
    ],
)
def test_a_last_event_id_that_is_not_ascii_digits_is_a_400_naming_the_header(
    stack: Stack, tenant: Tenant, last_event_id: bytes
) -> None:
    # given: a finished turn
    answered = httpx.post(
        f"{stack.api_url}/chat/completions", json=chat_body(), headers=bearer(tenant.key), timeout=30
    )
    assert answered.status_code == 200, answered.text
    turn_id = answered.headers["X-Turn-Id"]
    before = tenant_state(tenant)
    # when
    response = httpx.get(
        f"{stack.api_url}/turns/{turn_id}/events",
        headers={**bearer(tenant.key), "Last-Event-ID": last_event_id},
        timeout=30,
    )
    # then
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": "Last-Event-ID must be the id of an event of this turn.",
            "type": "invalid_request_error",
            "param": "Last-Event-ID",
            "code": "invalid_request",
        }
    }
    assert tenant_state(tenant) == before


# --- aliases -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_chat_completion_aliases_answer_like_v1(stack: Stack, tenant: Tenant, path: str) -> None:
    # given
    body = chat_body()
    # when
    response = httpx.post(f"{stack.url}{path}", json=body, headers=bearer(tenant.key), timeout=30)
    # then
    assert response.status_code == 200, response.text
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "echo"
    assert completion["session_id"] == body["session_id"]
    assert response.headers["X-Session-Id"] == body["session_id"]
    message = completion["choices"][0]["message"]
    assert (message["role"], message["content"]) == ("assistant", ECHO_OF_HI)
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_chat_completion_aliases_refuse_like_v1(stack: Stack, tenant: Tenant, path: str) -> None:
    invalid = httpx.post(
        f"{stack.url}{path}", json=chat_body(temperature=2.5), headers=bearer(tenant.key), timeout=30
    )
    unauthenticated = httpx.post(f"{stack.url}{path}", json=chat_body(), timeout=30)
    not_json = httpx.post(
        f"{stack.url}{path}",
        content=b"{",
        headers={**bearer(tenant.key), "Content-Type": "application/json"},
        timeout=30,
    )

    assert invalid.status_code == 400
    assert (envelope(invalid)["param"], envelope(invalid)["code"]) == ("temperature", "invalid_value")
    assert invalid.json()["detail"][0]["loc"] == ["body", "temperature"]
    assert unauthenticated.status_code == 401
    assert envelope(unauthenticated)["code"] == "missing_api_key"
    assert not_json.status_code == 400
    assert envelope(not_json)["code"] == "invalid_json"
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


# --- request ids ---------------------------------------------------------------------------------

ANSWERS = [
    pytest.param("POST", "/v1/chat/completions", True, {}, 200, id="200-completion"),
    pytest.param("POST", "/v1/chat/completions", True, {"temperature": 2.5}, 400, id="400-invalid"),
    pytest.param("POST", "/v1/chat/completions", False, {}, 401, id="401-no-key"),
    pytest.param("POST", "/v1/chat/completions", True, {"model": "nobody"}, 404, id="404-unknown-model"),
    pytest.param("GET", "/v1/nope", True, None, 404, id="404-unknown-path"),
    pytest.param("GET", "/v1/chat/completions", True, None, 405, id="405-wrong-method"),
    pytest.param("GET", "/v1/models", True, None, 200, id="200-models"),
]


def answer(
    stack: Stack,
    tenant: Tenant,
    method: str,
    path: str,
    authenticated: bool,
    changes: dict | None,
    **headers: str,
) -> httpx.Response:
    if authenticated:
        headers.update(bearer(tenant.key))
    body = None if changes is None else chat_body(**changes)
    return httpx.request(method, f"{stack.url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(("method", "path", "authenticated", "changes", "status"), ANSWERS)
def test_every_answer_carries_a_fresh_request_id(
    stack: Stack,
    tenant: Tenant,
    method: str,
    path: str,
    authenticated: bool,
    changes: dict | None,
    status: int,
) -> None:
    first = answer(stack, tenant, method, path, authenticated, changes)
    second = answer(stack, tenant, method, path, authenticated, changes)

    assert (first.status_code, second.status_code) == (status, status)
    assert REQUEST_ID.match(first.headers["X-Request-Id"])
    assert REQUEST_ID.match(second.headers["X-Request-Id"])
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


@pytest.mark.parametrize(("method", "path", "authenticated", "changes", "status"), ANSWERS)
def test_a_well_formed_incoming_request_id_is_echoed_unchanged(
    stack: Stack,
    tenant: Tenant,
    method: str,
    path: str,
    authenticated: bool,
    changes: dict | None,
    status: int,
) -> None:
    response = answer(stack, tenant, method, path, authenticated, changes, **{"X-Request-Id": "my-trace-123"})

    assert response.status_code == status
    assert response.headers["X-Request-Id"] == "my-trace-123"


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("has spaces in it", id="spaces"),
        pytest.param("x" * 129, id="129-characters"),
        pytest.param("<script>", id="markup"),
    ],
)
def test_a_malformed_incoming_request_id_is_replaced(stack: Stack, tenant: Tenant, incoming: str) -> None:
    response = answer(stack, tenant, "POST", "/v1/chat/completions", True, {}, **{"X-Request-Id": incoming})

    assert response.status_code == 200
    assert response.headers["X-Request-Id"] != incoming
    assert REQUEST_ID.match(response.headers["X-Request-Id"])


# --- server faults -------------------------------------------------------------------------------


def test_agent_fault_answers_a_500_envelope_without_a_trace_and_records_the_failed_turn(
    stack: Stack, tenant: Tenant
) -> None:
    # given: an agent whose backend the registry does not know (retired since it was configured)
    Agent.objects.create(organization=tenant.organization, slug="retired", name="Retired", backend="retired")
    session_id = f"s-{uuid.uuid4().hex}"
    body = {
        "model": "retired",
        "messages": [{"role": "user", "content": "are you there?"}],
        "session_id": session_id,
    }
    # when
    response = httpx.post(
        f"{stack.api_url}/chat/completions", json=body, headers=bearer(tenant.key), timeout=30
    )
    # then: the envelope, and nothing of the server's insides
    assert response.status_code == 500, response.text
    error = envelope(response)
    assert (error["type"], error["param"], error["code"]) == ("server_error", None, "agent_error")
    assert set(response.json()) == {"error"}
    for leak in ("Traceback", 'File "', "agents/backends", "site-packages"):
        assert leak not in response.text
    # then: the turn is recorded as failed with the error the client got
    turn = Turn.objects.get(organization=tenant.organization)
    assert turn.status == Turn.Status.FAILED
    assert turn.error == {"status": 500, "error": error}
    assert turn.finished_at is not None
    assert turn.output is None
    assert response.headers["X-Turn-Id"] == turn.id
    assert response.headers["X-Session-Id"] == session_id
    # then: the user's message was stored before the agent ran, and no answer after it
    session = Session.objects.get(organization=tenant.organization, external_id=session_id)
    assert turn.session_id == session.pk
    assert list(session.messages.values_list("seq", "role", "content", "turn_id")) == [
        (1, "user", "are you there?", turn.id)
    ]
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 1}
