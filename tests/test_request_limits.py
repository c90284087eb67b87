"""What one chat request may hold (messages, their tool calls, a message's text, tools), and that
the largest request Parley accepts, four at once, is stored whole and stalls neither /healthz nor
another tenant's stream: the body is parsed and validated off the web process's event loop. (How
long they are delayed, against the 100 ms target: bench/large_requests.py.)"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from sessions.models import Message, Session
from tests.conftest import Tenant, stored_rows
from tests.live import Stack, healthz_seconds, largest_body
from tests.sse import parse_sse_lines

MAX_MESSAGES = settings.PARLEY_MAX_MESSAGES_PER_REQUEST
MAX_CONTENT_CHARS = settings.PARLEY_MAX_CONTENT_CHARS
MAX_BODY_BYTES = settings.PARLEY_MAX_BODY_BYTES


def post_chat(stack: Stack, tenant: Tenant, body: bytes | dict) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{stack.api_url}/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"},
        timeout=60,
    )


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def refused(param: str, loc: list, msg: str) -> dict[str, Any]:
    """The 400 a broken limit gets: the envelope naming the field, and its detail."""
    return {
        "error": {
            "message": f"Invalid value for '{param}': {msg}",
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_value",
        },
        "detail": [{"loc": ["body", *loc], "msg": msg, "type": "max_length"}],
    }


def content_too_long(characters: int) -> str:
    return (
        f"Ensure this content has no more than {MAX_CONTENT_CHARS} characters of text (it has {characters})."
    )


def assert_refused_and_nothing_stored(
    stack: Stack, tenant: Tenant, body: dict, expected: dict[str, Any]
) -> None:
    before = stored_rows(tenant)
    response = post_chat(stack, tenant, body)
    assert response.status_code == 400, response.text[:500]
    assert response.json() == expected
    assert stored_rows(tenant) == before
    assert not Session.objects.filter(
        organization=tenant.organization, external_id=body["session_id"]
    ).exists()


def test_more_messages_than_the_limit_are_refused_naming_messages_and_nothing_is_stored(
    stack: Stack, tenant: Tenant
) -> None:
    body = {"model": "echo", "session_id": "too-many", "messages": [user("hi")] * (MAX_MESSAGES + 1)}
    expected = refused(
        "messages", ["messages"], f"Ensure this field has no more than {MAX_MESSAGES} elements."
    )
    assert_refused_and_nothing_stored(stack, tenant, body, expected)


def test_more_tool_calls_in_all_messages_than_the_message_limit_are_refused_and_nothing_is_stored(
    stack: Stack, tenant: Tenant
) -> None:
    # given two assistant messages that together call more tools than a request may hold messages
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    half = MAX_MESSAGES // 2 + 1
    calling = {"role": "assistant", "content": None, "tool_calls": [call] * half}
    body = {"model": "echo", "session_id": "too-many-calls", "messages": [user("hi"), calling, calling]}
    message = (
        f"Ensure these messages hold no more than {MAX_MESSAGES} tool calls in all (they hold {2 * half})."
    )
    assert_refused_and_nothing_stored(stack, tenant, body, refused("messages", ["messages"], message))


def test_a_message_with_more_text_than_the_limit_is_refused_naming_its_content_and_nothing_is_stored(
    stack: Stack, tenant: Tenant
) -> None:
    too_long = MAX_CONTENT_CHARS + 1
    body = {"model": "echo", "session_id": "too-long", "messages": [user("hi"), user("x" * too_long)]}
    message = (
        f"Ensure this content has no more than {MAX_CONTENT_CHARS} characters of text (it has {too_long})."
    )
    expected = refused("messages[1].content", ["messages", 1, "content"], message)
    assert_refused_and_nothing_stored(stack, tenant, body, expected)


def test_text_parts_count_together_against_the_content_limit(stack: Stack, tenant: Tenant) -> None:
    half = MAX_CONTENT_CHARS // 2 + 1
    parts = [{"type": "text", "text": "x" * half}, {"type": "text", "text": "y" * half}]
    body = {"model": "echo", "session_id": "too-long-parts", "messages": [{"role": "user", "content": parts}]}
    message = (
        f"Ensure this content has no more than {MAX_CONTENT_CHARS} characters of text (it has {2 * half})."
    )
    expected = refused("messages[0].content", ["messages", 0, "content"], message)
    assert_refused_and_nothing_stored(stack, tenant, body, expected)


def test_more_than_128_tools_are_refused_naming_tools_and_nothing_is_stored(
    stack: Stack, tenant: Tenant
) -> None:
    tools = [{"type": "function", "function": {"name": f"tool_{index}"}} for index in range(129)]
    body = {"model": "echo", "session_id": "too-many-tools", "messages": [user("hi")], "tools": tools}
    expected = refused("tools", ["tools"], "Ensure this field has no more than 128 elements.")
    assert_refused_and_nothing_stored(stack, tenant, body, expected)


def test_a_message_at_the_content_limit_is_accepted_and_stored(stack: Stack, tenant: Tenant) -> None:
    body = {"model": "echo", "session_id": "long-enough", "messages": [user("x" * MAX_CONTENT_CHARS)]}
    response = post_chat(stack, tenant, body)
    assert response.status_code == 200, response.text[:500]
    stored = Message.objects.get(session__organization=tenant.organization, seq=1)
    assert len(stored.content) == MAX_CONTENT_CHARS


# --- the largest accepted request, four at once ---------------------------------------------------


@dataclass
class StreamTimes:
    """Another tenant's small streamed request: when its answer began (the web process has
    authenticated, parsed and stored it) and when its [DONE] came (its turn has run too)."""

    headers: float
    done: float


def streamed_echo(http: httpx.Client, stack: Stack, tenant: Tenant, text: str) -> StreamTimes:
    started = time.monotonic()
    with http.stream(
        "POST",
        f"{stack.api_url}/chat/completions",
        json={"model": "echo", "messages": [user(text)], "stream": True},
        headers={"Authorization": f"Bearer {tenant.key}"},
    ) as response:
        headers = time.monotonic() - started
        read = parse_sse_lines(response.iter_lines())
    assert response.status_code == 200
    assert read.done_count == 1
    assert read.content() == f"You said: {text}\n(1 message in context)"
    return StreamTimes(headers=headers, done=time.monotonic() - started)


def upload(stack: Stack, tenant: Tenant, body: bytes) -> str:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{stack.api_url}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"},
        timeout=120,
    ) as response:
        text = response.read().decode()
    assert response.status_code == 200, text[:500]
    assert text.endswith("data: [DONE]\n\n")
    return f"{time.monotonic() - started:.2f}"


# A functional check, not the speed target: the target (another tenant's stream and /healthz
# delayed by at most 100 ms) is measured by bench/large_requests.py, which prints and records the
# figures. Here: the four are stored whole, and nothing stalls. Parsed on the event loop, each one
# held the loop for its whole validation: 17.6 s for 100,000 messages, and /healthz waited 6.6 s
# for four of them. Off the loop, what remains is the share of one interpreter lock with the
# threads doing that work, on a loaded machine: the bounds leave room for that, not for a stall.
# The other tenant's request makes some twenty database round trips, each waiting for the lock
# again, where /healthz makes none: its bound is longer. The end of that stream also waits for an
# executor free of the four turns (two Celery children in the tests; one SQLite writer in the
# embedded mode): that figure is printed, not bound.
HEALTHZ_DELAY_BOUND_SECONDS = 2.0
STREAM_START_DELAY_BOUND_SECONDS = 3.0


def median_ms(figures: list[float]) -> str:
    return f"{statistics.median(figures) * 1000:.0f} ms"


def max_ms(figures: list[float]) -> str:
    return f"{max(figures) * 1000:.0f} ms"


def test_four_of_the_largest_requests_at_once_hold_up_neither_healthz_nor_another_tenants_stream(
    stack: Stack, tenant: Tenant, other_tenant: Tenant
) -> None:
    sessions = [f"largest-{index}-{uuid.uuid4().hex[:8]}" for index in range(4)]
    bodies = [
        largest_body(session_id, max_bytes=MAX_BODY_BYTES, max_messages=MAX_MESSAGES)
        for session_id in sessions
    ]
    # Each figure is taken on a connection of its own, kept open: the server's time, not the
    # test's making of clients.
    with httpx.Client(timeout=60) as probe, httpx.Client(timeout=60) as streamer:
        # given the quiet figures
        quiet_healthz = [healthz_seconds(probe, stack.url) for _ in range(20)]
        quiet_streams = [streamed_echo(streamer, stack, other_tenant, f"quiet {n}") for n in range(5)]
        # when one tenant sends four requests of the largest accepted size at once
        busy_healthz: list[float] = []
        busy_streams: list[StreamTimes] = []
        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(max_workers=5) as pool:
            uploads = [pool.submit(upload, stack, tenant, body) for body in bodies]

            def uploading() -> bool:
                return not all(upload.done() for upload in uploads) and time.monotonic() < deadline

            def stream_while_uploading() -> None:
                for n in range(200):
                    if not uploading():
                        return
                    busy_streams.append(streamed_echo(streamer, stack, other_tenant, f"busy {n}"))

            streams = pool.submit(stream_while_uploading)
            for _ in range(2000):
                if not uploading():
                    break
                busy_healthz.append(healthz_seconds(probe, stack.url))
                time.sleep(0.02)
            upload_seconds = [upload.result() for upload in uploads]
            streams.result()
    # then
    quiet_starts, busy_starts = [t.headers for t in quiet_streams], [t.headers for t in busy_streams]
    quiet_ends, busy_ends = [t.done for t in quiet_streams], [t.done for t in busy_streams]
    print(
        f"\n[{stack.mode}] four requests of {MAX_BODY_BYTES} bytes and {MAX_MESSAGES} messages at once, "
        f"answered in {upload_seconds} s. Quiet median / busy max: /healthz {median_ms(quiet_healthz)} / "
        f"{max_ms(busy_healthz)} ({len(busy_healthz)} probes); another tenant's stream, its start "
        f"{median_ms(quiet_starts)} / {max_ms(busy_starts)}, its [DONE] {median_ms(quiet_ends)} / "
        f"{max_ms(busy_ends)} ({len(busy_streams)} streams)"
    )
    assert len(busy_healthz) >= 5 and busy_streams
    assert max(busy_healthz) - statistics.median(quiet_healthz) < HEALTHZ_DELAY_BOUND_SECONDS
    assert max(busy_starts) - statistics.median(quiet_starts) < STREAM_START_DELAY_BOUND_SECONDS
    # and every one of the four was stored whole
    for session_id in sessions:
        session = Session.objects.get(organization=tenant.organization, external_id=session_id)
        assert session.messages.count() == MAX_MESSAGES + 1
