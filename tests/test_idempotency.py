"""Retries and idempotency, in both run modes: an Idempotency-Key makes a request safe to repeat
(the same answer, byte for byte; a different request with the key is 400; a request whose turn is
still being answered is 409 with Retry-After, as Stripe does), for PARLEY_IDEMPOTENCY_KEY_SECONDS;
and without a key, the SDK's retry after a dropped connection never stores a message twice."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from django.conf import settings

from agents.services import agent_create
from sessions.models import Message, Turn
from tests.conftest import Tenant, stored_rows
from tests.live import RETRY_WINDOW_SECONDS, Stack
from tests.test_limits import in_background, slow_agent, wait_for

KEEPALIVE = b": keep-alive\n\n"


def post(stack: Stack, tenant: Tenant, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{stack.api_url}/chat/completions", json=body, headers=headers, timeout=60)


def post_stream_bytes(
    stack: Stack, tenant: Tenant, body: dict[str, Any], key: str
) -> tuple[httpx.Response, bytes]:
    """A streamed request's whole answer as it came on the wire, without the keep-alive comments
    (which only say how long the client waited)."""
    headers = {"Authorization": f"Bearer {tenant.key}", "Idempotency-Key": key}
    with httpx.stream(
        "POST", f"{stack.api_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as response:
        raw = response.read()
    return response, raw.replace(KEEPALIVE, b"")


def request(text: str, **fields: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": text}], **fields}


def transcript(tenant: Tenant, session_id: str) -> list[tuple[str, Any]]:
    return list(
        Message.objects.filter(session__organization=tenant.organization, session__external_id=session_id)
        .order_by("seq")
        .values_list("role", "content")
    )


def key_in_use(turn_id: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"Another request with this Idempotency-Key is still being answered (turn {turn_id}). "
            f"Retry once it has finished, or follow it with GET /v1/turns/{turn_id}/events.",
            "type": "invalid_request_error",
            "param": "Idempotency-Key",
            "code": "idempotency_key_in_use",
        }
    }


KEY_REUSED = {
    "error": {
        "message": "This Idempotency-Key was already used with a different request.",
        "type": "invalid_request_error",
        "param": "Idempotency-Key",
        "code": "idempotency_key_reused",
    }
}


def test_the_same_request_with_its_key_gets_the_first_answer_byte_for_byte(
    stack: Stack, tenant: Tenant
) -> None:
    # given a first request with a key
    key = f"order-{uuid.uuid4().hex}"
    body = request("pay", session_id="idem-json")
    first = post(stack, tenant, body, key)
    assert first.status_code == 200, first.text
    stored = stored_rows(tenant)
    # when it is sent again, past the retry window, so that only the key can match
    time.sleep(RETRY_WINDOW_SECONDS + 0.5)
    again = post(stack, tenant, body, key)
    # then the answer is the first one's, byte for byte, and nothing more was stored
    assert again.status_code == 200
    assert again.content == first.content
    assert (again.headers["X-Turn-Id"], again.headers["X-Session-Id"]) == (
        first.headers["X-Turn-Id"],
        "idem-json",
    )
    assert stored_rows(tenant) == stored == {"sessions": 1, "turns": 1, "messages": 2}


def test_the_same_streamed_request_with_its_key_replays_the_same_stream(stack: Stack, tenant: Tenant) -> None:
    key = f"stream-{uuid.uuid4().hex}"
    body = request("tell me", session_id="idem-stream", stream=True, stream_options={"include_usage": True})
    first, first_bytes = post_stream_bytes(stack, tenant, body, key)
    assert first.status_code == 200
    assert first_bytes.endswith(b"data: [DONE]\n\n")
    again, again_bytes = post_stream_bytes(stack, tenant, body, key)
    assert again.status_code == 200
    assert (
        again.headers["content-type"] == first.headers["content-type"] == "text/event-stream; charset=utf-8"
    )
    assert again_bytes == first_bytes
    assert again.headers["X-Turn-Id"] == first.headers["X-Turn-Id"]
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}


def test_a_failed_turn_answers_its_key_with_the_same_error(stack: Stack, tenant: Tenant) -> None:
    # given an agent that fails, and a request with a key that it answered with its error
    agent_create(
        organization=tenant.organization,
        slug="broken",
        backend="echo",
        backend_config={"fail_after_chunks": 0},
    )
    key = f"fails-{uuid.uuid4().hex}"
    body = {**request("hi", session_id="idem-fail"), "model": "broken"}
    first = post(stack, tenant, body, key)
    assert first.status_code == 500
    assert first.json()["error"]["code"] == "agent_error"
    # when the request is sent again with its key, then the same error comes, and nothing runs again
    again = post(stack, tenant, body, key)
    assert (again.status_code, again.content) == (500, first.content)
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 1}


def test_a_key_used_again_for_a_different_request_is_400_and_stores_nothing(
    stack: Stack, tenant: Tenant
) -> None:
    key = f"k-{uuid.uuid4().hex}"
    assert post(stack, tenant, request("a", session_id="idem-other"), key).status_code == 200
    before = stored_rows(tenant)
    refused = post(stack, tenant, request("b", session_id="idem-other"), key)
    assert refused.status_code == 400
    assert refused.json() == KEY_REUSED
    assert stored_rows(tenant) == before
    assert transcript(tenant, "idem-other") == [
        ("user", "a"),
        ("assistant", "You said: a\n(1 message in context)"),
    ]


def test_a_request_whose_turn_is_still_being_answered_is_409_with_retry_after(
    stack: Stack, tenant: Tenant
) -> None:
    # given a request with a key whose turn is still running
    model = slow_agent(tenant, seconds=3)
    key = f"slow-{uuid.uuid4().hex}"
    body = {**request("slow one", session_id="idem-busy"), "model": model}
    first = in_background(post, stack, tenant, body, key)
    # (running: its runner has stored the user's message, which it does once it holds the turn)
    wait_for(
        lambda: Message.objects.filter(
            turn__organization=tenant.organization, turn__idempotency_key=key
        ).exists()
    )
    turn = Turn.objects.get(organization=tenant.organization, idempotency_key=key)
    # when the same request comes with the same key
    meanwhile = post(stack, tenant, body, key)
    # then it is refused for now, and nothing more is stored
    assert meanwhile.status_code == 409
    assert meanwhile.headers["Retry-After"] == "1"
    assert meanwhile.json() == key_in_use(turn.id)
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 1}
    # and once the turn has finished, the same request gets the first answer
    answered = first.result()
    assert answered.status_code == 200
    after = post(stack, tenant, body, key)
    assert (after.status_code, after.content) == (200, answered.content)
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}


@pytest.mark.parametrize(
    "session_id", [pytest.param("idem-race", id="same-session"), pytest.param(None, id="no-session")]
)
def test_two_requests_at_once_with_the_same_key_one_runs_and_the_other_is_409(
    stack: Stack, tenant: Tenant, session_id: str | None
) -> None:
    # given two identical requests with one key, sent at the same moment
    model = slow_agent(tenant, seconds=2)
    key = f"race-{uuid.uuid4().hex}"
    body = {**request("once", **({"session_id": session_id} if session_id else {})), "model": model}
    start = threading.Barrier(2)

    def send() -> httpx.Response:
        start.wait(timeout=10)
        return post(stack, tenant, body, key)

    both = [in_background(send), in_background(send)]
    responses = sorted((future.result() for future in both), key=lambda response: response.status_code)
    # then one ran and the other was told so
    turn = Turn.objects.get(organization=tenant.organization)
    assert [response.status_code for response in responses] == [200, 409]
    answered, refused = responses
    assert answered.headers["X-Turn-Id"] == turn.id
    assert refused.json() == key_in_use(turn.id)
    assert refused.headers["Retry-After"] == "1"
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}


def test_a_key_older_than_its_lifetime_names_nothing(stack: Stack, tenant: Tenant) -> None:
    # given a key used more than PARLEY_IDEMPOTENCY_KEY_SECONDS ago
    key = f"old-{uuid.uuid4().hex}"
    first = post(stack, tenant, request("long ago", session_id="idem-old"), key)
    assert first.status_code == 200
    lifetime = timedelta(seconds=settings.PARLEY_IDEMPOTENCY_KEY_SECONDS)
    old = Turn.objects.get(organization=tenant.organization)
    Turn.objects.filter(pk=old.pk).update(queued_at=old.queued_at - lifetime - timedelta(seconds=1))
    # when the key comes again, even with another request
    again = post(stack, tenant, request("today", session_id="idem-old"), key)
    # then it is a new request: a new turn, which now holds the key
    assert again.status_code == 200
    assert again.headers["X-Turn-Id"] != first.headers["X-Turn-Id"]
    assert Turn.objects.get(pk=old.pk).idempotency_key is None
    assert Turn.objects.get(pk=again.headers["X-Turn-Id"]).idempotency_key == key
    assert [role for role, _ in transcript(tenant, "idem-old")] == ["user", "assistant"] * 2


def test_a_key_is_the_organizations_own(stack: Stack, tenant: Tenant, other_tenant: Tenant) -> None:
    key = f"shared-{uuid.uuid4().hex}"
    mine = post(stack, tenant, request("mine"), key)
    theirs = post(stack, other_tenant, request("theirs"), key)
    assert (mine.status_code, theirs.status_code) == (200, 200)
    assert theirs.json()["choices"][0]["message"]["content"] == "You said: theirs\n(1 message in context)"
    assert stored_rows(tenant) == stored_rows(other_tenant) == {"sessions": 1, "turns": 1, "messages": 2}


# --- without a key: a retry after a dropped connection -----------------------------------------------


def send_then_drop(stack: Stack, tenant: Tenant, body: dict[str, Any]) -> None:
    """Send a whole chat request on a socket and close it once the server has stored the turn, before
    the answer: the client never learns what became of it."""
    address = urlsplit(stack.url)
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Authorization: Bearer {tenant.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(head + payload)
        wait_for(lambda: Turn.objects.filter(organization=tenant.organization).exists())


@pytest.mark.parametrize(
    ("pause", "retry_count"),
    [
        pytest.param(RETRY_WINDOW_SECONDS + 0.5, "1", id="sdk-retry-past-the-window"),
        pytest.param(0, "0", id="plain-resend-within-the-window"),
    ],
)
def test_a_retry_after_a_dropped_connection_stores_the_message_once(
    stack: Stack, tenant: Tenant, pause: float, retry_count: str
) -> None:
    # given a request whose connection dropped while its turn ran
    model = slow_agent(tenant, seconds=1.5)
    session_id = f"dropped-{uuid.uuid4().hex[:8]}"
    body = {**request("did you get this?", session_id=session_id), "model": model}
    send_then_drop(stack, tenant, body)
    time.sleep(pause)
    # when the client sends it again, as the SDK retries (it numbers its retries) or as anyone would
    client = openai.OpenAI(base_url=stack.api_url, api_key=tenant.key, max_retries=0, timeout=30)
    completion = client.chat.completions.create(
        model=model,
        messages=body["messages"],
        extra_body={"session_id": session_id},
        extra_headers={"X-Stainless-Retry-Count": retry_count},
    )
    # then it gets the answer of the turn the dropped request started, stored once
    turn = Turn.objects.get(organization=tenant.organization)
    assert completion.id == f"chatcmpl-{turn.id.removeprefix('turn_')}"
    assert completion.choices[0].message.content == "You said: did you get this?\n(1 message in context)"
    assert transcript(tenant, session_id) == [
        ("user", "did you get this?"),
        ("assistant", "You said: did you get this?\n(1 message in context)"),
    ]


def test_the_sdks_own_retry_after_its_timeout_stores_the_message_once(stack: Stack, tenant: Tenant) -> None:
    # given an SDK client that gives up on an answer after 1 s, and retries
    model = slow_agent(tenant, seconds=2.5)
    client = openai.OpenAI(base_url=stack.api_url, api_key=tenant.key, max_retries=4, timeout=1.0)
    session_id = f"timed-out-{uuid.uuid4().hex[:8]}"
    # when the agent takes longer than that
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "patience"}], extra_body={"session_id": session_id}
    )
    # then the SDK dropped its connection and retried, and the message was stored once
    assert raw.retries_taken >= 1
    assert raw.parse().choices[0].message.content == "You said: patience\n(1 message in context)"
    assert Turn.objects.filter(organization=tenant.organization).count() == 1
    assert transcript(tenant, session_id) == [
        ("user", "patience"),
        ("assistant", "You said: patience\n(1 message in context)"),
    ]
