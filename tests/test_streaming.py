"""Streaming turns over Server-Sent Events, in both run modes: the official SDK (sync and async),
LangChain, and a raw reader that checks the wire format."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from agents.models import Agent
from sessions.models import Message, Turn
from tests.live import KEEPALIVE_SECONDS
from tests.sse import get_stream, parse_sse_lines, post_stream, raw_stream

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "verbose": {"type": "boolean"}},
            "required": ["order_id"],
        },
    },
}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def stored(tenant, session_id: str) -> list[tuple[str, object]]:
    return list(
        Message.objects.filter(session__organization=tenant.organization, session__external_id=session_id)
        .order_by("seq")
        .values_list("role", "content")
    )


def slow_agent(tenant, slug: str, **config) -> Agent:
    return Agent.objects.create(organization=tenant.organization, slug=slug, name=slug, backend_config=config)


def test_sdk_stream_prints_the_answer_and_the_turn_is_stored(client, tenant):
    stream = client.chat.completions.create(
        model="echo", messages=[user("stream me")], stream=True, extra_body={"session_id": "s1"}
    )
    chunks = list(stream)
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert content == "You said: stream me\n(1 message in context)"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert stored(tenant, "s1") == [("user", "stream me"), ("assistant", content)]


def test_async_sdk_stream_continues_the_session(async_client, tenant):
    async def run() -> str:
        await async_client.chat.completions.create(
            model="echo", messages=[user("first")], extra_body={"session_id": "as1"}
        )
        stream = await async_client.chat.completions.create(
            model="echo", messages=[user("second")], stream=True, extra_body={"session_id": "as1"}
        )
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    assert asyncio.run(run()) == 'You said: second\nEarlier you said: "first"\n(3 messages in context)'
    assert [role for role, _ in stored(tenant, "as1")] == ["user", "assistant", "user", "assistant"]


def test_langchain_streams_through_parley(stack, tenant):
    chat = ChatOpenAI(
        model="echo",
        base_url=stack.api_url,
        api_key=tenant.key,
        max_retries=0,
        extra_body={"session_id": "lc1"},
    )
    pieces = [chunk.content for chunk in chat.stream("hello from langchain")]
    assert len(pieces) > 3
    assert "".join(pieces) == "You said: hello from langchain\n(1 message in context)"
    assert stored(tenant, "lc1")[0] == ("user", "hello from langchain")


def test_wire_format_line_by_line(stack, tenant):
    response, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {
            "model": "echo",
            "messages": [user("wire check")],
            "stream": True,
            "stream_options": {"include_usage": True},
            "session_id": "wire",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    turn_id = response.headers["X-Turn-Id"]
    assert response.headers["X-Session-Id"] == "wire"
    # every event has an increasing integer id; [DONE] exactly once and last
    ids = [int(event.id) for event in read.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert read.done_count == 1 and read.events[-1].data == "[DONE]"
    chunks = read.chunks
    shared = {
        (c["id"], c["created"], c["model"], c["system_fingerprint"], c["session_id"], c["turn_id"])
        for c in chunks
    }
    assert len(shared) == 1
    assert next(iter(shared))[4:] == ("wire", turn_id)
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    *content_chunks, usage = chunks
    assert content_chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finish = [chunk["choices"][0]["finish_reason"] for chunk in content_chunks]
    assert finish[:-1] == [None] * (len(finish) - 1) and finish[-1] == "stop"
    assert usage["choices"] == []
    assert (
        usage["usage"]["total_tokens"]
        == usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
        > 0
    )
    assert read.content() == "You said: wire check\n(1 message in context)"


def test_without_include_usage_no_usage_chunk_is_sent(stack, tenant):
    _, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "echo", "messages": [user("x")], "stream": True},
    )
    assert all(chunk["choices"] for chunk in read.chunks)
    assert read.done_count == 1


def test_accept_event_stream_gets_a_stream_even_with_stream_false(stack, tenant):
    response, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "echo", "messages": [user("accept")], "stream": False},
        headers={"Accept": "text/event-stream"},
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert read.content() == "You said: accept\n(1 message in context)"


def test_accept_json_without_stream_gets_json(stack, tenant):
    response = httpx.post(
        f"{stack.api_url}/chat/completions",
        headers={"Authorization": f"Bearer {tenant.key}", "Accept": "application/json"},
        json={"model": "echo", "messages": [user("json please")]},
    )
    assert response.headers["content-type"] == "application/json"
    assert response.json()["object"] == "chat.completion"


def test_streamed_tool_calls_assembled_by_index_equal_the_plain_answer(client):
    request = {"model": "echo", "messages": [user("order A-17")], "tools": [TOOL], "tool_choice": "required"}
    plain = client.chat.completions.create(**request).choices[0]
    calls: dict[int, dict] = {}
    finish = None
    fragments = 0
    for chunk in client.chat.completions.create(**request, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for fragment in choice.delta.tool_calls or []:
                fragments += 1
                call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += fragment.id or ""
                call["name"] += (fragment.function.name or "") if fragment.function else ""
                call["arguments"] += (fragment.function.arguments or "") if fragment.function else ""
    [expected] = plain.message.tool_calls
    assert fragments > 2  # the arguments arrive in pieces
    assert finish == plain.finish_reason == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("call_")
    assert (calls[0]["name"], json.loads(calls[0]["arguments"])) == (
        expected.function.name,
        json.loads(expected.function.arguments),
    )


def test_n_choices_stream_each_by_index(stack, tenant):
    _, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "echo", "messages": [user("twice")], "stream": True, "n": 2},
    )
    assert read.content(0) == read.content(1) == "You said: twice\n(1 message in context)"
    finishes = [
        (choice["index"], choice["finish_reason"])
        for chunk in read.chunks
        for choice in chunk["choices"]
        if choice["finish_reason"]
    ]
    assert finishes == [(0, "stop"), (1, "stop")]


def test_invalid_or_unauthorized_stream_request_gets_json_4xx(stack, tenant):
    bad = httpx.post(
        f"{stack.api_url}/chat/completions",
        headers={"Authorization": f"Bearer {tenant.key}", "Accept": "text/event-stream"},
        json={"model": "echo", "messages": [], "stream": True},
    )
    unauthorized = httpx.post(
        f"{stack.api_url}/chat/completions",
        headers={"Authorization": "Bearer sk-parley-nope", "Accept": "text/event-stream"},
        json={"model": "echo", "messages": [user("x")], "stream": True},
    )
    assert (bad.status_code, bad.headers["content-type"], bad.json()["error"]["param"]) == (
        400,
        "application/json",
        "messages",
    )
    assert (unauthorized.status_code, unauthorized.headers["content-type"]) == (401, "application/json")


def test_five_thousand_chunk_answer_arrives_complete_and_in_order(stack, tenant):
    words = " ".join(f"w{i}" for i in range(5000))
    _, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "echo", "messages": [user(words)], "stream": True, "session_id": "big"},
    )
    assert len(read.chunks) > 5000
    assert read.content() == f"You said: {words}\n(1 message in context)"
    # chunk ids run on without a gap; the id after them is the usage event's, not sent here
    chunk_ids = [int(event.id) for event in read.events if event.data != "[DONE]"]
    assert chunk_ids == list(range(1, len(read.chunks) + 1))
    assert int(read.events[-1].id) == chunk_ids[-1] + 2
    assert stored(tenant, "big")[1] == ("assistant", read.content())


def test_a_twelve_second_pause_between_deltas_streams_correctly_with_keep_alives(stack, tenant):
    slow_agent(tenant, "pauser", pause_after_chunks=2, pause_seconds=12)
    started = time.monotonic()
    _, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "pauser", "messages": [user("wait for it")], "stream": True},
    )
    assert time.monotonic() - started >= 12
    assert read.content() == "You said: wait for it\n(1 message in context)"
    assert read.done_count == 1
    assert read.comments.count("keep-alive") >= 12 // KEEPALIVE_SECONDS - 1


def test_reconnect_with_last_event_id_resumes_without_gap_or_duplicate(stack, tenant):
    slow_agent(tenant, "dripper", chunk_delay_seconds=0.1)
    text = " ".join(f"part{i}" for i in range(30))
    response, first = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "dripper", "messages": [user(text)], "stream": True, "session_id": "resume"},
        stop_after=8,
    )
    turn_id = response.headers["X-Turn-Id"]
    last_id = first.events[-1].id
    # when the client comes back with the last id it saw
    _, rest = get_stream(f"{stack.api_url}/turns/{turn_id}/events", tenant.key, last_event_id=last_id)
    # then it gets exactly the rest
    ids = [int(event.id) for event in first.events + rest.events if event.data != "[DONE]"]
    assert ids == list(range(1, len(ids) + 1))
    assert first.content() + rest.content() == f"You said: {text}\n(1 message in context)"
    assert rest.done_count == 1
    # and a full replay from the start gives the same answer
    _, replay = get_stream(f"{stack.api_url}/turns/{turn_id}/events", tenant.key)
    assert replay.content() == first.content() + rest.content()


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"tools": [TOOL], "tool_choice": "required"}, id="tool-calls"),
        pytest.param({"n": 2}, id="text"),
    ],
)
def test_live_replayed_and_resumed_streams_are_the_same_bytes(stack, tenant, fields):
    # given a streamed turn, with usage and text that JSON escapes, as a live listener got it
    slow_agent(tenant, "drip", chunk_delay_seconds=0.02)
    body = {
        "model": "drip",
        "messages": [user('order "A-17" — café ✓ \\ tab\there')],
        "stream": True,
        "stream_options": {"include_usage": True},
        "session_id": "bytes",
        **fields,
    }
    response, live = raw_stream("POST", f"{stack.api_url}/chat/completions", tenant.key, body=body)
    assert response.status_code == 200
    events = parse_sse_lines(live.decode().split("\n")).events
    assert events[-1].data == "[DONE]" and "usage" in events[-2].json
    if "tools" in fields:
        assert events[-3].json["choices"][0]["finish_reason"] == "tool_calls"
    # when the turn is replayed whole, and resumed from an event in the middle
    events_url = f"{stack.api_url}/turns/{response.headers['X-Turn-Id']}/events?include_usage=true"
    _, replay = raw_stream("GET", events_url, tenant.key)
    middle = events[len(events) // 2].id
    _, resumed = raw_stream("GET", events_url, tenant.key, last_event_id=middle)
    # then each is exactly the bytes the live listener got
    assert replay == live
    tail = live[live.index(f"id: {middle}\n".encode()) :].split(b"\n\n", 1)[1]
    assert resumed == tail and len(resumed) > 0


def test_a_replay_from_the_end_of_a_finished_turn_ends_at_once_with_what_remains(stack, tenant):
    slow_agent(tenant, "breaks", fail_after_chunks=2)
    finished = []
    for model in ("echo", "breaks"):
        response, read = post_stream(
            f"{stack.api_url}/chat/completions",
            tenant.key,
            {"model": model, "messages": [user("and then?")], "stream": True},
        )
        finished.append((response.headers["X-Turn-Id"], read.events))
    (completed, completed_events), (failed, failed_events) = finished
    last_completed, last_failed = int(completed_events[-1].id), int(failed_events[-1].id)
    for turn_id, after, expected in (
        (completed, last_completed, b""),
        (completed, last_completed + 5, b""),
        # the usage event before [DONE] is not asked for: only [DONE] remains
        (completed, last_completed - 2, f"id: {last_completed}\ndata: [DONE]\n\n".encode()),
        (failed, last_failed, b""),
        (failed, last_failed - 1, f"id: {last_failed}\ndata: {failed_events[-1].data}\n\n".encode()),
    ):
        started = time.monotonic()
        response, raw = raw_stream(
            "GET", f"{stack.api_url}/turns/{turn_id}/events", tenant.key, last_event_id=str(after)
        )
        # at once: not after keep-alives until the idle limit (PARLEY_STREAM_IDLE_SECONDS, 30 s here)
        assert time.monotonic() - started < 5, (turn_id, after)
        assert (response.status_code, response.headers["content-type"]) == (
            200,
            "text/event-stream; charset=utf-8",
        )
        assert raw == expected, (turn_id, after)


def test_a_client_that_disconnects_does_not_cancel_the_turn(stack, tenant):
    slow_agent(tenant, "steady", chunk_delay_seconds=0.05)
    response, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {
            "model": "steady",
            "messages": [user("keep going without me")],
            "stream": True,
            "session_id": "left",
        },
        stop_after=2,
    )
    assert len(read.events) == 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(stored(tenant, "left")) < 2:
        time.sleep(0.2)
    assert stored(tenant, "left")[1] == (
        "assistant",
        "You said: keep going without me\n(1 message in context)",
    )
    assert Turn.objects.get(pk=response.headers["X-Turn-Id"]).status == "completed"


def test_cancel_stops_the_turn_and_keeps_what_was_produced(stack, tenant):
    slow_agent(tenant, "slowpoke", chunk_delay_seconds=0.3)
    text = " ".join(f"word{i}" for i in range(40))
    response, first = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "slowpoke", "messages": [user(text)], "stream": True, "session_id": "cancel-me"},
        stop_after=3,
    )
    turn_id = response.headers["X-Turn-Id"]
    headers = {"Authorization": f"Bearer {tenant.key}"}
    cancelled = httpx.post(f"{stack.api_url}/turns/{turn_id}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    _, rest = get_stream(
        f"{stack.api_url}/turns/{turn_id}/events", tenant.key, last_event_id=first.events[-1].id
    )
    assert rest.done_count == 0
    assert rest.errors == [
        {
            "error": {
                "message": "The turn was cancelled.",
                "type": "invalid_request_error",
                "param": None,
                "code": "turn_cancelled",
            }
        }
    ]
    partial = first.content() + rest.content()
    full = f"You said: {text}\n(1 message in context)"
    assert partial and full.startswith(partial) and partial != full
    turn = Turn.objects.get(pk=turn_id)
    assert turn.status == "cancelled" and turn.finished_at is not None
    assert stored(tenant, "cancel-me") == [("user", text), ("assistant", partial)]
    again = httpx.post(f"{stack.api_url}/turns/{turn_id}/cancel", headers=headers)
    assert (again.status_code, again.json()["status"]) == (200, "cancelled")


def test_a_finished_turn_cannot_be_cancelled(stack, tenant, client):
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=[user("done already")])
    response = httpx.post(
        f"{stack.api_url}/turns/{raw.headers['X-Turn-Id']}/cancel",
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert (response.status_code, response.json()["error"]["code"]) == (409, "turn_finished")
    assert Turn.objects.get(pk=raw.headers["X-Turn-Id"]).status == "completed"


def test_a_json_request_whose_turn_is_cancelled_gets_the_cancel_error(stack, tenant, client):
    slow_agent(tenant, "sleepy", delay_seconds=3)
    result: dict = {}

    def ask() -> None:
        try:
            client.chat.completions.create(
                model="sleepy", messages=[user("never mind")], extra_body={"session_id": "nm"}
            )
        except openai.APIStatusError as error:
            result["error"] = error

    waiter = threading.Thread(target=ask)
    waiter.start()
    deadline = time.monotonic() + 10
    while not Turn.objects.filter(
        session__external_id="nm", session__organization=tenant.organization
    ).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    turn = Turn.objects.get(session__external_id="nm", session__organization=tenant.organization)
    httpx.post(f"{stack.api_url}/turns/{turn.id}/cancel", headers={"Authorization": f"Bearer {tenant.key}"})
    waiter.join(timeout=20)
    assert (result["error"].status_code, result["error"].body["code"]) == (400, "turn_cancelled")
    assert Turn.objects.get(pk=turn.id).status == "cancelled"


def test_an_agent_that_fails_mid_stream_ends_it_with_an_error_event(stack, tenant, client):
    slow_agent(tenant, "crasher", fail_after_chunks=3)
    response, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "crasher", "messages": [user("this will break")], "stream": True, "session_id": "crash"},
    )
    assert len(read.chunks) == 3
    assert read.done_count == 0
    [error] = read.errors
    assert error["error"]["code"] == "agent_error" and error["error"]["type"] == "server_error"
    assert read.events[-1].json == error
    assert Turn.objects.get(pk=response.headers["X-Turn-Id"]).status == "failed"
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="crasher", messages=[user("again")], stream=True))


def test_two_hundred_simultaneous_streams_each_get_their_own_answer(stack, tenant):
    async def one(http: httpx.AsyncClient, index: int) -> tuple[int, str, int]:
        body = {
            "model": "echo",
            "messages": [user(f"client {index} here")],
            "stream": True,
            "session_id": f"many-{index}",
        }
        content, done = "", 0
        async with http.stream("POST", "/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done += 1
                elif line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    assert chunk["session_id"] == f"many-{index}"
                    content += "".join(choice["delta"].get("content") or "" for choice in chunk["choices"])
        return index, content, done

    async def run() -> list[tuple[int, str, int]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=stack.api_url,
            headers={"Authorization": f"Bearer {tenant.key}"},
            limits=limits,
            timeout=120,
        ) as http:
            return await asyncio.wait_for(asyncio.gather(*(one(http, i) for i in range(200))), timeout=180)

    results = asyncio.run(run())
    assert len(results) == 200
    for index, content, done in results:
        assert content == f"You said: client {index} here\n(1 message in context)"
        assert done == 1


def test_turn_endpoints_of_another_organization_look_missing(stack, tenant, other_tenant):
    response, _ = post_stream(
        f"{stack.api_url}/chat/completions",
        other_tenant.key,
        {"model": "echo", "messages": [user("x")], "stream": True},
    )
    turn_id = response.headers["X-Turn-Id"]
    headers = {"Authorization": f"Bearer {tenant.key}"}
    for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
        foreign = httpx.request(method, f"{stack.api_url}/turns/{turn_id}{path}", headers=headers)
        missing = httpx.request(method, f"{stack.api_url}/turns/turn_nope{path}", headers=headers)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["error"]["code"] == missing.json()["error"]["code"] == "turn_not_found"
    assert Turn.objects.get(pk=turn_id).status == "completed"


def test_turn_status_endpoint(stack, tenant, client):
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=[user("status?")])
    turn_id = raw.headers["X-Turn-Id"]
    body = httpx.get(
        f"{stack.api_url}/turns/{turn_id}", headers={"Authorization": f"Bearer {tenant.key}"}
    ).json()
    assert body["id"] == turn_id
    assert body["object"] == "turn"
    assert body["status"] == "completed"
    assert body["session_id"] == raw.parse().session_id
    assert body["usage"] == raw.parse().usage.model_dump(
        include={"prompt_tokens", "completion_tokens", "total_tokens"}
    )


class TestNlxRoute:
    def url(self, stack, deployment: str = "echo", channel: str = "web-en-US") -> str:
        return f"{stack.url}/{deployment}/{channel}/chat/completions"

    def test_streams_by_default_and_names_the_session_by_conversation_id(self, stack, tenant):
        response, read = post_stream(
            self.url(stack), tenant.key, {"model": "nlx:conv-9", "messages": [user("hola")]}
        )
        assert response.headers["content-type"].startswith("text/event-stream")
        assert read.content() == "You said: hola\n(1 message in context)"
        assert response.headers["X-Session-Id"] == "conv-9"
        _, again = post_stream(
            self.url(stack, channel="sms-es-MX"),
            tenant.key,
            {"model": "nlx:conv-9", "messages": [user("otra")]},
        )
        assert again.content().endswith("(3 messages in context)")

    def test_plain_nlx_starts_a_new_session(self, stack, tenant):
        response, read = post_stream(self.url(stack), tenant.key, {"model": "nlx", "messages": [user("hi")]})
        assert response.headers["X-Session-Id"].startswith("sess_")
        assert read.done_count == 1

    def test_stream_false_gets_json(self, stack, tenant):
        response = httpx.post(
            self.url(stack),
            headers={"Authorization": f"Bearer {tenant.key}"},
            json={"model": "nlx:conv-json", "messages": [user("hi")], "stream": False},
        )
        assert response.json()["session_id"] == "conv-json"

    @pytest.mark.parametrize("channel", ["web", "web-english", "en-US-web"])
    def test_channel_without_a_language_code_is_refused(self, stack, tenant, channel):
        response = httpx.post(
            self.url(stack, channel=channel),
            headers={"Authorization": f"Bearer {tenant.key}"},
            json={"model": "nlx", "messages": [user("hi")]},
        )
        assert (response.status_code, response.json()["error"]["param"]) == (400, "channel")
        assert not Turn.objects.filter(organization=tenant.organization).exists()

    def test_other_models_and_missing_keys_are_refused(self, stack, tenant):
        wrong = httpx.post(
            self.url(stack),
            headers={"Authorization": f"Bearer {tenant.key}"},
            json={"model": "gpt-4o", "messages": [user("x")]},
        )
        anonymous = httpx.post(self.url(stack), json={"model": "nlx", "messages": [user("x")]})
        assert (wrong.status_code, wrong.json()["error"]["param"]) == (400, "model")
        assert anonymous.status_code == 401

    def test_deployment_names_the_agent(self, stack, tenant):
        response = httpx.post(
            self.url(stack, deployment="nobody"),
            headers={"Authorization": f"Bearer {tenant.key}"},
            json={"model": "nlx", "messages": [user("x")]},
        )
        assert (response.status_code, response.json()["error"]["code"]) == (404, "model_not_found")
