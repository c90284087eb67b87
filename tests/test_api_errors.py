"""Every error on an API path is JSON in OpenAI's envelope, never Django's HTML page: unknown
paths, wrong methods, bodies that are not JSON or too large, bad credentials (checked before the
body), and real server faults. Every answer carries a request id."""

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
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.utils import timezone

from accounts.services import api_key_create, api_key_revoke
from agents.models import Agent
from sessions.models import Session, Turn
from tests.conftest import Tenant, stored_rows
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
