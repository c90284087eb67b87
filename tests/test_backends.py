"""Real agent backends against fakes on loopback, in both run modes: an OpenAI-compatible
upstream (through the official SDK on Parley's side and the client's), a customer webhook, and
server-side tool loops."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import openai
import pytest
from django.conf import settings

from agents.backends import backend_for
from agents.models import Agent
from agents.secrets import seal
from agents.signing import verify
from sessions.models import Message, Turn
from tests.fakes import WEBHOOK_SECRET
from tests.sse import post_stream

CLIENT_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
SECOND_TOOL = {
    "type": "function",
    "function": {
        "name": "refund",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    },
}


def marker() -> str:
    return f"m{uuid.uuid4().hex[:8]}"


def upstream_agent(
    tenant, fake_upstream, model: str, slug: str = "support", extra_params: dict | None = None, **fields
) -> Agent:
    config = backend_for("openai").validate_config(
        {
            "base_url": f"{fake_upstream.url}/v1",
            "model": model,
            "api_key": "sk-upstream-secret",
            "max_retries": 2,
            **({"extra_params": extra_params} if extra_params else {}),
        },
        previous={},
    )
    return Agent.objects.create(
        organization=tenant.organization,
        slug=slug,
        name=slug,
        backend="openai",
        backend_config=config,
        **fields,
    )


def transcript(tenant, session_id: str) -> list[dict]:
    return [
        message.as_openai()
        for message in Message.objects.filter(
            session__organization=tenant.organization, session__external_id=session_id
        )
    ]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


class TestOpenAIBackend:
    def test_upstream_receives_system_prompt_history_and_params_and_the_answer_is_stored(
        self, client, tenant, fake_upstream
    ):
        upstream_agent(tenant, fake_upstream, "fake-echo", system_prompt="You are Parley support.")
        word = marker()
        # given a first turn
        first = client.chat.completions.create(
            model="support",
            messages=[user(f"hello {word}")],
            temperature=0.3,
            max_completion_tokens=50,
            extra_body={"session_id": f"up-{word}"},
        )
        # when the client sends only its new message
        second = client.chat.completions.create(
            model="support", messages=[user(f"again {word}")], seed=7, extra_body={"session_id": f"up-{word}"}
        )
        # then
        assert first.choices[0].message.content == f"upstream says: hello {word}"
        assert second.choices[0].message.content == f"upstream says: again {word}"
        assert second.usage.prompt_tokens == 11 and second.usage.completion_tokens == 7
        requests = [r.json for r in fake_upstream.received(word)]
        assert len(requests) == 2
        assert requests[0]["model"] == "fake-echo"
        assert requests[0]["messages"] == [
            {"role": "system", "content": "You are Parley support."},
            user(f"hello {word}"),
        ]
        assert (requests[0]["temperature"], requests[0]["max_completion_tokens"]) == (0.3, 50)
        assert requests[0]["stream"] is True
        assert requests[1]["messages"] == [
            {"role": "system", "content": "You are Parley support."},
            user(f"hello {word}"),
            {"role": "assistant", "content": f"upstream says: hello {word}"},
            user(f"again {word}"),
        ]
        assert requests[1]["seed"] == 7 and "temperature" not in requests[1]
        assert fake_upstream.received(word)[0].headers["authorization"] == "Bearer sk-upstream-secret"
        assert requests[0]["stream_options"] == {"include_usage": True}
        assert [m["role"] for m in transcript(tenant, f"up-{word}")] == [
            "user",
            "assistant",
            "user",
            "assistant",
        ]

    def test_turns_reuse_the_connection_to_the_upstream(self, client, tenant, fake_upstream):
        # given an upstream that keeps its connections open (a chunked body, as real ones answer)
        upstream_agent(tenant, fake_upstream, "fake-keep-alive")
        word = marker()
        # when six turns run one after the other
        answers = [
            client.chat.completions.create(
                model="support", messages=[user(f"{word} {index}")], extra_body={"session_id": f"ka-{word}"}
            )
            for index in range(6)
        ]
        # then each was answered, on one connection per process that runs turns (the web process in
        # the embedded mode, each of the test worker's two children in production)
        assert [answer.choices[0].message.content for answer in answers] == [
            f"upstream says: {word} {index}" for index in range(6)
        ]
        processes = 1 if settings.PARLEY_EXECUTOR == "inline" else 2
        assert len({request.client_port for request in fake_upstream.received(word)}) <= processes

    def test_extra_params_are_merged_into_the_upstream_body_and_the_requests_params_win(
        self, client, tenant, fake_upstream
    ):
        upstream_agent(
            tenant,
            fake_upstream,
            "fake-echo",
            extra_params={"top_k": 4, "temperature": 1.5, "repetition_penalty": 1.1},
        )
        word = marker()
        answer = client.chat.completions.create(
            model="support", messages=[user(word)], temperature=0.2, extra_body={"session_id": f"x-{word}"}
        )
        assert answer.choices[0].message.content == f"upstream says: {word}"
        [sent] = [r.json for r in fake_upstream.received(word)]
        assert {key: sent[key] for key in ("top_k", "temperature", "repetition_penalty")} == {
            "top_k": 4,
            "temperature": 0.2,
            "repetition_penalty": 1.1,
        }

    def test_history_window_limits_what_the_upstream_sees(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-echo", system_prompt="sys", history_max_messages=3)
        word = marker()
        for index in range(3):
            client.chat.completions.create(
                model="support", messages=[user(f"{word} {index}")], extra_body={"session_id": f"win-{word}"}
            )
        last = fake_upstream.received(f"{word} 2")[-1].json
        assert last["messages"] == [
            {"role": "system", "content": "sys"},
            user(f"{word} 1"),
            {"role": "assistant", "content": f"upstream says: {word} 1"},
            user(f"{word} 2"),
        ]
        assert len(transcript(tenant, f"win-{word}")) == 6

    def test_streamed_tool_call_fragments_keep_index_id_and_name(self, stack, tenant, fake_upstream, client):
        upstream_agent(tenant, fake_upstream, "fake-tools")
        word = marker()
        _, read = post_stream(
            f"{stack.api_url}/chat/completions",
            tenant.key,
            {
                "model": "support",
                "messages": [user(word)],
                "tools": [CLIENT_TOOL, SECOND_TOOL],
                "stream": True,
            },
        )
        fragments = [
            f for chunk in read.chunks for c in chunk["choices"] for f in c["delta"].get("tool_calls", [])
        ]
        heads = [f for f in fragments if "id" in f]
        assert [(f["index"], f["function"]["name"], f["type"]) for f in heads] == [
            (0, "lookup_order", "function"),
            (1, "refund", "function"),
        ]
        assert len(fragments) > 20  # arguments arrive in pieces of 1-3 characters, relayed as they came
        for index in (0, 1):
            arguments = "".join(f["function"].get("arguments", "") for f in fragments if f["index"] == index)
            assert json.loads(arguments) == {"order_id": "A-17", "note": "fragmented"}
        assert read.chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
        # and the non-streamed answer to the same request assembles to the same calls
        plain = client.chat.completions.create(
            model="support", messages=[user(word)], tools=[CLIENT_TOOL, SECOND_TOOL]
        )
        assert [
            (c.function.name, json.loads(c.function.arguments)) for c in plain.choices[0].message.tool_calls
        ] == [
            ("lookup_order", {"order_id": "A-17", "note": "fragmented"}),
            ("refund", {"order_id": "A-17", "note": "fragmented"}),
        ]

    def test_a_429_is_retried_before_the_first_token(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-429-once")
        word = marker()
        completion = client.chat.completions.create(model="support", messages=[user(word)])
        assert completion.choices[0].message.content == f"upstream says: {word}"
        assert len(fake_upstream.received(word)) == 2

    def test_upstream_500_is_a_502_after_the_retries(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-500")
        word = marker()
        with pytest.raises(openai.APIStatusError) as raised:
            client.chat.completions.create(
                model="support", messages=[user(word)], extra_body={"session_id": f"e-{word}"}
            )
        assert raised.value.status_code == 502
        assert raised.value.body["code"] == "upstream_error"
        assert "upstream exploded" in raised.value.body["message"]
        assert len(fake_upstream.received(word)) == 3  # the first try and max_retries=2
        assert Turn.objects.get(session__external_id=f"e-{word}").status == "failed"
        assert transcript(tenant, f"e-{word}") == [user(word)]

    def test_upstream_400_is_a_400_with_the_upstreams_message(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-400")
        word = marker()
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="support", messages=[user(word)])
        assert (
            raised.value.body["message"]
            == "The upstream model refused the request: temperature is not supported by this model"
        )
        assert len(fake_upstream.received(word)) == 1

    def test_an_upstream_that_drops_mid_stream_ends_the_stream_with_an_error_and_is_not_retried(
        self, stack, tenant, fake_upstream
    ):
        upstream_agent(tenant, fake_upstream, "fake-cut")
        word = marker()
        _, read = post_stream(
            f"{stack.api_url}/chat/completions",
            tenant.key,
            {"model": "support", "messages": [user(word)], "stream": True},
        )
        assert read.content() == "one two three"
        assert read.done_count == 0
        assert read.errors[0]["error"]["type"] == "server_error"
        assert len(fake_upstream.received(word)) == 1

    def test_a_slow_drip_reaches_the_client_as_it_comes(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-drip")
        started = time.monotonic()
        arrivals = []
        for chunk in client.chat.completions.create(model="support", messages=[user(marker())], stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))
        assert "".join(text for _, text in arrivals) == "slow and steady wins the race"
        # six words 0.4 s apart: the first is relayed long before the upstream is done
        assert arrivals[-1][0] - arrivals[0][0] >= 1.6
        assert arrivals[0][0] < arrivals[-1][0] - 1.5

    def test_the_api_key_is_sealed_at_rest(self, tenant, fake_upstream):
        agent = upstream_agent(tenant, fake_upstream, "fake-echo")
        stored = json.dumps(Agent.objects.values_list("backend_config", flat=True).get(pk=agent.pk))
        assert "sk-upstream-secret" not in stored
        assert backend_for("openai").public_config(agent.backend_config)["api_key_set"] is True
        assert "api_key" not in backend_for("openai").public_config(agent.backend_config)


class TestServerTools:
    def test_the_agent_calls_the_calculator_on_the_worker_and_uses_the_result(
        self, client, tenant, fake_upstream
    ):
        upstream_agent(tenant, fake_upstream, "fake-calc", tools=[{"type": "calculator"}])
        word = marker()
        completion = client.chat.completions.create(
            model="support",
            messages=[user(f"what is 17.5% of 2,380? {word}")],
            extra_body={"session_id": f"calc-{word}"},
        )
        assert completion.choices[0].message.content == "The tools said: 416.5"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.choices[0].message.tool_calls is None
        stored = transcript(tenant, f"calc-{word}")
        assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
        assert stored[1]["tool_calls"][0]["function"] == {
            "name": "calculator",
            "arguments": '{"expression": "0.175 * 2380"}',
        }
        assert stored[2] == {
            "role": "tool",
            "content": "416.5",
            "tool_call_id": stored[1]["tool_calls"][0]["id"],
        }
        second_request = fake_upstream.received(word)[1].json
        assert second_request["messages"][-1] == stored[2]
        assert any(tool["function"]["name"] == "calculator" for tool in second_request["tools"])

    def test_tool_steps_are_streamed_only_to_clients_that_ask(self, stack, tenant, fake_upstream, client):
        upstream_agent(tenant, fake_upstream, "fake-calc", tools=[{"type": "calculator"}])
        url = f"{stack.api_url}/chat/completions"
        body = {"model": "support", "messages": [user(marker())], "stream": True}
        _, plain = post_stream(url, tenant.key, body)
        _, detailed = post_stream(url, tenant.key, {**body, "stream_options": {"include_tool_steps": True}})
        assert not any("tool_step" in chunk for chunk in plain.chunks)
        steps = [chunk["tool_step"] for chunk in detailed.chunks if "tool_step" in chunk]
        assert [(s["type"], s["name"]) for s in steps] == [
            ("tool_call", "calculator"),
            ("tool_result", "calculator"),
        ]
        assert steps[1]["content"] == "416.5"
        assert plain.content() == detailed.content() == "The tools said: 416.5"
        # and the SDK reads a stream with tool steps without trouble
        stream = client.chat.completions.create(
            model="support",
            messages=[user(marker())],
            stream=True,
            stream_options={"include_tool_steps": True},
        )
        assert (
            "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
            == "The tools said: 416.5"
        )

    def test_malformed_tool_arguments_are_answered_to_the_model_as_a_tool_error(
        self, client, tenant, fake_upstream
    ):
        upstream_agent(tenant, fake_upstream, "fake-bad-args", tools=[{"type": "calculator"}])
        word = marker()
        completion = client.chat.completions.create(
            model="support", messages=[user(word)], extra_body={"session_id": f"bad-{word}"}
        )
        tool_message = transcript(tenant, f"bad-{word}")[2]
        assert tool_message["role"] == "tool"
        assert tool_message["content"].startswith("error: ")
        assert completion.choices[0].message.content == f"The tools said: {tool_message['content']}"

    def test_too_many_tool_rounds_end_the_turn_with_a_note(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-loop", tools=[{"type": "calculator"}], max_tool_steps=2)
        word = marker()
        completion = client.chat.completions.create(
            model="support", messages=[user(word)], extra_body={"session_id": f"loop-{word}"}
        )
        assert completion.choices[0].finish_reason == "stop"
        assert "more than 2 rounds of tool calls" in completion.choices[0].message.content
        assert len(fake_upstream.received(word)) == 3
        roles = [m["role"] for m in transcript(tenant, f"loop-{word}")]
        assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]

    def test_mixed_server_and_client_tools_in_one_turn(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-mixed", tools=[{"type": "calculator"}])
        word = marker()
        session = {"session_id": f"mixed-{word}"}
        # the server tool runs on the worker, the client's call comes back
        first = client.chat.completions.create(
            model="support", messages=[user(word)], tools=[CLIENT_TOOL], extra_body=session
        )
        assert first.choices[0].finish_reason == "tool_calls"
        [call] = first.choices[0].message.tool_calls
        assert call.function.name == "lookup_order"
        # the client continues with only its tool result
        second = client.chat.completions.create(
            model="support",
            messages=[{"role": "tool", "tool_call_id": call.id, "content": "shipped"}],
            tools=[CLIENT_TOOL],
            extra_body=session,
        )
        assert second.choices[0].message.content == "The tools said: 416.5; shipped"
        roles = [m["role"] for m in transcript(tenant, f"mixed-{word}")]
        assert roles == ["user", "assistant", "tool", "tool", "assistant"]

    def test_a_tool_result_for_no_open_call_is_refused_and_nothing_is_stored(self, client, tenant):
        word = marker()
        client.chat.completions.create(
            model="echo", messages=[user(word)], extra_body={"session_id": f"tc-{word}"}
        )
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(
                model="echo",
                messages=[{"role": "tool", "tool_call_id": "call_nope", "content": "x"}],
                extra_body={"session_id": f"tc-{word}"},
            )
        assert raised.value.param == "messages[0].tool_call_id"
        assert raised.value.code == "unknown_tool_call_id"
        assert len(transcript(tenant, f"tc-{word}")) == 2

    def test_n_above_one_is_refused_with_server_tools(self, client, tenant, fake_upstream):
        upstream_agent(tenant, fake_upstream, "fake-calc", tools=[{"type": "calculator"}])
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="support", messages=[user("x")], n=2)
        assert raised.value.param == "n"


class TestWebhookBackend:
    def webhook_agent(self, tenant, fake_webhook, path: str) -> Agent:
        config = backend_for("webhook").validate_config(
            {"url": f"{fake_webhook.url}{path}", "secret": WEBHOOK_SECRET}, previous={}
        )
        return Agent.objects.create(
            organization=tenant.organization,
            slug="hook",
            name="Hook",
            backend="webhook",
            backend_config=config,
        )

    def test_each_turn_is_posted_signed_and_the_json_answer_relayed(self, client, tenant, fake_webhook):
        self.webhook_agent(tenant, fake_webhook, "/json")
        word = marker()
        completion = client.chat.completions.create(
            model="hook", messages=[user(word)], temperature=0.5, extra_body={"session_id": f"hook-{word}"}
        )
        assert completion.choices[0].message.content == f"hook says: {word}"
        [request] = fake_webhook.received(word)
        assert request.headers["x-signature-valid"] == "True"
        assert verify(WEBHOOK_SECRET, request.body, request.headers["parley-signature"])
        assert not verify(WEBHOOK_SECRET, request.body + b" ", request.headers["parley-signature"])
        body = request.json
        assert set(body) == {"session_id", "turn_id", "agent", "messages", "tools", "params"}
        assert (body["session_id"], body["agent"], body["params"]["temperature"]) == (
            f"hook-{word}",
            "hook",
            0.5,
        )
        assert body["turn_id"].startswith("turn_")
        assert body["messages"] == [user(word)]

    def test_an_sse_answer_is_streamed_through(self, stack, tenant, fake_webhook):
        self.webhook_agent(tenant, fake_webhook, "/sse")
        word = marker()
        _, read = post_stream(
            f"{stack.api_url}/chat/completions",
            tenant.key,
            {"model": "hook", "messages": [user(word)], "stream": True},
        )
        assert read.content() == f"hook streams: {word}"
        assert read.done_count == 1

    def test_a_webhook_tool_call_reaches_the_client(self, client, tenant, fake_webhook):
        self.webhook_agent(tenant, fake_webhook, "/tools")
        completion = client.chat.completions.create(
            model="hook", messages=[user(marker())], tools=[CLIENT_TOOL]
        )
        assert completion.choices[0].finish_reason == "tool_calls"
        assert completion.choices[0].message.tool_calls[0].function.name == "lookup_order"

    def test_a_failing_webhook_is_retried_before_any_output(self, client, tenant, fake_webhook):
        self.webhook_agent(tenant, fake_webhook, "/flaky")
        word = marker()
        completion = client.chat.completions.create(model="hook", messages=[user(word)])
        assert completion.choices[0].message.content == f"hook says: {word}"
        assert len(fake_webhook.received(word)) == 2

    def test_the_signing_secret_is_required_and_sealed(self, tenant, fake_webhook):
        agent = self.webhook_agent(tenant, fake_webhook, "/json")
        assert WEBHOOK_SECRET not in json.dumps(agent.backend_config)
        assert backend_for("webhook").public_config(agent.backend_config) == {
            "url": f"{fake_webhook.url}/json",
            "timeout": 30.0,
            "max_retries": 2,
            "secret_set": True,
        }


def test_models_lists_real_backends_too(stack, tenant, fake_upstream):
    upstream_agent(tenant, fake_upstream, "fake-echo")
    response = httpx.get(f"{stack.api_url}/models", headers={"Authorization": f"Bearer {tenant.key}"})
    assert [model["id"] for model in response.json()["data"]] == ["echo", "support"]


@pytest.mark.parametrize("backend", ["openai", "webhook"])
def test_a_configuration_read_back_can_be_saved_again_and_keeps_its_secret(
    backend, fake_upstream, fake_webhook
):
    implementation = backend_for(backend)
    given = (
        {"base_url": f"{fake_upstream.url}/v1", "model": "m", "api_key": "sk-roundtrip"}
        if backend == "openai"
        else {"url": f"{fake_webhook.url}/json", "secret": WEBHOOK_SECRET}
    )
    stored = implementation.validate_config(given, previous={})
    again = implementation.validate_config(implementation.public_config(stored), previous=stored)
    assert again == stored


def test_openai_configuration_refuses_ambiguous_keys_and_reserved_extra_params(fake_upstream):
    backend = backend_for("openai")
    base = {"base_url": f"{fake_upstream.url}/v1", "model": "m"}
    with pytest.raises(Exception) as both:
        backend.validate_config({**base, "api_key": "sk-x", "api_key_env": "UPSTREAM_KEY"}, previous={})
    assert "api_key_env" in both.value.detail
    with pytest.raises(Exception) as reserved:
        backend.validate_config({**base, "extra_params": {"stream": False, "top_k": 4}}, previous={})
    assert "extra_params" in reserved.value.detail
    assert backend.validate_config({**base, "extra_params": {"top_k": 4}}, previous={})["extra_params"] == {
        "top_k": 4
    }


def test_an_api_key_from_a_missing_environment_variable_is_a_clear_error(client, tenant, fake_upstream):
    config = backend_for("openai").validate_config(
        {
            "base_url": f"{fake_upstream.url}/v1",
            "model": "fake-echo",
            "api_key_env": "PARLEY_UPSTREAM_KEY_UNSET",
        },
        previous={},
    )
    Agent.objects.create(
        organization=tenant.organization, slug="envkey", name="e", backend="openai", backend_config=config
    )
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="envkey", messages=[user(marker())])
    assert raised.value.status_code == 502
    assert raised.value.body["code"] == "upstream_key_missing"


def test_n_above_one_from_default_params_is_refused_with_server_tools(client, tenant, fake_upstream):
    upstream_agent(
        tenant, fake_upstream, "fake-calc", tools=[{"type": "calculator"}], default_params={"n": 2}
    )
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="support", messages=[user("x")])
    assert raised.value.param == "n"


def test_the_step_limit_on_a_mixed_answer_keeps_the_client_calls_open(client, tenant, fake_upstream):
    upstream_agent(tenant, fake_upstream, "fake-mixed", tools=[{"type": "calculator"}], max_tool_steps=0)
    word = marker()
    first = client.chat.completions.create(
        model="support", messages=[user(word)], tools=[CLIENT_TOOL], extra_body={"session_id": f"lim-{word}"}
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    stored = transcript(tenant, f"lim-{word}")
    assert [c["function"]["name"] for c in stored[1]["tool_calls"]] == ["lookup_order"]
    assert "more than 0 rounds" in stored[1]["content"]
    second = client.chat.completions.create(
        model="support",
        messages=[{"role": "tool", "tool_call_id": call.id, "content": "ok"}],
        tools=[CLIENT_TOOL],
        extra_body={"session_id": f"lim-{word}"},
    )
    assert second.choices[0].finish_reason == "stop"


# --- what a stored agent may still do: agents saved before the rules were checked ---------------


def chat_both_ways(stack, tenant, model: str, word: str) -> tuple[httpx.Response, list[dict]]:
    """The same request without and with streaming: the answer, and the stream's error events."""
    body = {"model": model, "messages": [user(word)]}
    answer = httpx.post(
        f"{stack.api_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {tenant.key}"},
        timeout=30,
    )
    response, read = post_stream(f"{stack.api_url}/chat/completions", tenant.key, {**body, "stream": True})
    assert response.status_code == 200
    assert read.done_count == 0
    return answer, read.errors


@pytest.mark.parametrize(
    "variable", ["SECRET_KEY", "DATABASE_URL", "PARLEY_SECRETS_KEY", "PARLEY_JWT_SIGNING_KEY"]
)
def test_an_agent_stored_naming_a_variable_not_offered_fails_and_sends_nothing(
    stack, tenant, fake_upstream, variable
):
    # given an agent stored before api_key_env was checked, naming one of the server's secrets
    Agent.objects.create(
        organization=tenant.organization,
        slug="thief",
        name="thief",
        backend="openai",
        backend_config={"base_url": f"{fake_upstream.url}/v1", "model": "fake-echo", "api_key_env": variable},
    )
    # (the live servers' SECRET_KEY is the tests' own unless the production mode sets one)
    secret = stack.env.get(variable, settings.SECRET_KEY if variable == "SECRET_KEY" else None)
    assert secret
    word = marker()
    # when it is asked, without and with streaming
    answer, stream_errors = chat_both_ways(stack, tenant, "thief", word)
    # then each turn fails with a clear error
    error = {
        "error": {
            "message": f"This agent's api_key_env {variable} is not an environment variable offered for "
            "upstream keys (only those listed in PARLEY_UPSTREAM_KEY_ENVS and those named "
            "PARLEY_UPSTREAM_KEY_* are); an admin of the organization must change it.",
            "type": "server_error",
            "param": None,
            "code": "upstream_key_not_offered",
        }
    }
    assert (answer.status_code, answer.json()) == (502, error)
    assert stream_errors == [error]
    turns = Turn.objects.filter(organization=tenant.organization)
    assert [(turn.status, turn.error) for turn in turns] == [("failed", {"status": 502, **error})] * 2
    # and the variable's value reached no upstream
    assert fake_upstream.received(word) == []
    with fake_upstream.lock:
        for request in fake_upstream.requests:
            assert secret not in json.dumps(request.headers)
            assert secret.encode() not in request.body


CREDENTIALS_REFUSED = {
    "error": {
        "message": "Refusing a URL with credentials in it (user:password@127.0.0.1): give secrets in "
        "the settings made for them (api_key, secret), never in a URL.",
        "type": "invalid_request_error",
        "param": None,
        "code": "egress_refused",
    }
}


@pytest.mark.parametrize("backend", ["openai", "webhook"])
def test_an_agent_stored_with_credentials_in_its_url_is_refused_at_use(
    stack, tenant, fake_upstream, fake_webhook, backend
):
    # given an agent stored before credentials in URLs were refused
    if backend == "openai":
        config = {
            "base_url": f"http://user:hunter2@127.0.0.1:{fake_upstream.port}/v1",
            "model": "fake-echo",
            "api_key": seal("sk-upstream-secret"),
        }
    else:
        config = {
            "url": f"http://user:hunter2@127.0.0.1:{fake_webhook.port}/json",
            "secret": seal(WEBHOOK_SECRET),
        }
    Agent.objects.create(
        organization=tenant.organization, slug="creds", name="creds", backend=backend, backend_config=config
    )
    word = marker()
    # when it is asked, without and with streaming
    answer, stream_errors = chat_both_ways(stack, tenant, "creds", word)
    # then the egress guard refuses the call: nothing was sent
    assert (answer.status_code, answer.json()) == (400, CREDENTIALS_REFUSED)
    assert stream_errors == [CREDENTIALS_REFUSED]
    assert fake_upstream.received(word) == fake_webhook.received(word) == []
