"""Session semantics of the chat API, in both run modes, through the official SDK."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from accounts.models import AutomationSettings
from agents.models import Agent
from sessions.models import Message, Session, Turn
from tests.live import RETRY_WINDOW_SECONDS, TURN_WAIT_SECONDS


def transcript(tenant, session_id: str) -> list[tuple[int, str, object]]:
    return list(
        Message.objects.filter(session__organization=tenant.organization, session__external_id=session_id)
        .order_by("seq")
        .values_list("seq", "role", "content")
    )


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_session_id_continues_the_conversation_and_the_agent_sees_the_history(client, tenant):
    # given a first turn that creates session support-42
    first = client.chat.completions.create(
        model="echo", messages=[user("My name is Ada")], extra_body={"session_id": "support-42"}
    )
    # when the client sends only its new message with the same session_id
    second = client.chat.completions.create(
        model="echo", messages=[user("What is my name?")], extra_body={"session_id": "support-42"}
    )
    # then the agent received the whole history
    assert first.session_id == second.session_id == "support-42"
    assert second.choices[0].message.content == (
        'You said: What is my name?\nEarlier you said: "My name is Ada"\n(3 messages in context)'
    )
    assert transcript(tenant, "support-42") == [
        (1, "user", "My name is Ada"),
        (2, "assistant", "You said: My name is Ada\n(1 message in context)"),
        (3, "user", "What is my name?"),
        (4, "assistant", second.choices[0].message.content),
    ]


def test_async_sdk_continues_a_session(async_client, tenant):
    async def conversation() -> list[str]:
        answers = []
        for text in ("one", "two"):
            completion = await async_client.chat.completions.create(
                model="echo", messages=[user(text)], extra_body={"session_id": "async-1"}
            )
            answers.append(completion.choices[0].message.content)
        return answers

    answers = asyncio.run(conversation())
    assert answers == [
        "You said: one\n(1 message in context)",
        'You said: two\nEarlier you said: "one"\n(3 messages in context)',
    ]
    assert Session.objects.get(organization=tenant.organization, external_id="async-1").message_count == 4


def test_request_without_session_id_creates_a_new_session(client, tenant):
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=[user("hi")])
    completion = raw.parse()
    assert completion.session_id.startswith("sess_")
    assert raw.headers["X-Session-Id"] == completion.session_id
    assert raw.headers["X-Turn-Id"].startswith("turn_")
    assert raw.headers["X-Request-Id"].startswith("req_")
    session = Session.objects.get(organization=tenant.organization, external_id=completion.session_id)
    assert session.message_count == 2


def test_agent_colon_session_model_form_names_the_session(client, tenant):
    client.chat.completions.create(model="echo:crm-7", messages=[user("first")])
    second = client.chat.completions.create(model="echo:crm-7", messages=[user("second")])
    assert second.model == "echo"
    assert second.session_id == "crm-7"
    assert [row[1] for row in transcript(tenant, "crm-7")] == ["user", "assistant", "user", "assistant"]


def test_resent_whole_transcript_is_not_stored_twice(client, tenant):
    # given an OpenAI-style client that resends the conversation every time
    history = [{"role": "system", "content": "Be brief."}, user("hello")]
    first = client.chat.completions.create(
        model="echo", messages=history, extra_body={"session_id": "full-1"}
    )
    history += [{"role": "assistant", "content": first.choices[0].message.content}, user("again")]
    # when
    second = client.chat.completions.create(
        model="echo", messages=history, extra_body={"session_id": "full-1"}
    )
    # then each message is stored once, and the agent saw each once
    assert [row[1] for row in transcript(tenant, "full-1")] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert second.choices[0].message.content.endswith("(4 messages in context)")


def test_repeated_system_prompt_with_a_new_message_is_not_stored_again(client, tenant):
    system = {"role": "system", "content": "You are terse."}
    client.chat.completions.create(
        model="echo", messages=[system, user("a")], extra_body={"session_id": "sys-1"}
    )
    client.chat.completions.create(
        model="echo", messages=[system, user("b")], extra_body={"session_id": "sys-1"}
    )
    assert [row[1:] for row in transcript(tenant, "sys-1")][::2] == [
        ("system", "You are terse."),
        ("assistant", "You said: a\n(2 messages in context)"),
        ("assistant", 'You said: b\nEarlier you said: "a"\n(4 messages in context)'),
    ]


def test_agent_system_prompt_comes_first_and_is_not_stored(client, tenant):
    Agent.objects.create(
        organization=tenant.organization, slug="helper", name="Helper", system_prompt="Be kind."
    )
    completion = client.chat.completions.create(
        model="helper", messages=[user("hi")], extra_body={"session_id": "p-1"}
    )
    assert completion.choices[0].message.content == "You said: hi\n(2 messages in context)"
    assert [row[1] for row in transcript(tenant, "p-1")] == ["user", "assistant"]


def test_another_tenants_session_id_starts_a_separate_session(client, tenant, other_tenant, stack):
    # given the other tenant's session "shared-name" with a secret in it
    other = openai.OpenAI(base_url=stack.api_url, api_key=other_tenant.key, max_retries=0)
    other.chat.completions.create(
        model="echo", messages=[user("canary-7f3a")], extra_body={"session_id": "shared-name"}
    )
    # when this tenant uses the same session id
    mine = client.chat.completions.create(
        model="echo", messages=[user("hello")], extra_body={"session_id": "shared-name"}
    )
    # then it is its own new session; nothing of the other tenant's leaks or changes
    assert mine.choices[0].message.content == "You said: hello\n(1 message in context)"
    assert "canary" not in mine.model_dump_json()
    assert len(transcript(other_tenant, "shared-name")) == 2
    assert len(transcript(tenant, "shared-name")) == 2


def test_with_auto_creation_off_an_unknown_session_is_404_and_nothing_is_stored(client, tenant):
    AutomationSettings.objects.filter(organization=tenant.organization).update(auto_create_sessions=False)
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="echo", messages=[user("hi")], extra_body={"session_id": "nope"})
    assert raised.value.body == {
        "message": "No session found with id 'nope'.",
        "type": "invalid_request_error",
        "param": "session_id",
        "code": "session_not_found",
    }
    assert not Session.objects.filter(organization=tenant.organization).exists()
    assert not Turn.objects.filter(organization=tenant.organization).exists()


def test_with_auto_creation_off_a_call_without_session_is_stateless(client, tenant):
    AutomationSettings.objects.filter(organization=tenant.organization).update(auto_create_sessions=False)
    completion = client.chat.completions.create(model="echo", messages=[user("x"), user("y")])
    assert completion.session_id is None
    assert (
        completion.choices[0].message.content == 'You said: y\nEarlier you said: "x"\n(2 messages in context)'
    )
    assert not Session.objects.filter(organization=tenant.organization).exists()
    assert Turn.objects.get(organization=tenant.organization).status == "completed"


def test_unknown_model_is_404_model_not_found_and_nothing_is_stored(client, tenant, other_tenant):
    Agent.objects.create(organization=other_tenant.organization, slug="theirs", name="Theirs")
    for model in ("no-such-agent", "theirs"):
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(
                model=model, messages=[user("hi")], extra_body={"session_id": "m-1"}
            )
        assert raised.value.code == "model_not_found"
        assert raised.value.param == "model"
    assert not Session.objects.filter(organization=tenant.organization).exists()


def test_disabled_agent_is_not_a_model(client, tenant):
    Agent.objects.create(organization=tenant.organization, slug="off", name="Off", enabled=False)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="off", messages=[user("hi")])


def test_twenty_parallel_requests_on_one_session_run_one_after_the_other(client, tenant):
    # when 20 clients write to the same session at once
    def ask(index: int) -> str:
        completion = client.chat.completions.create(
            model="echo", messages=[user(f"message {index}")], extra_body={"session_id": "busy"}
        )
        return completion.choices[0].message.content

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(ask, range(20)))
    # then 40 messages, strictly alternating, numbered 1..40 without gaps
    rows = transcript(tenant, "busy")
    assert [seq for seq, _, _ in rows] == list(range(1, 41))
    assert [role for _, role, _ in rows] == ["user", "assistant"] * 20
    # and each answer saw every earlier turn: the k-th answer had 2k-1 messages in context
    for k in range(1, 21):
        assistant = rows[2 * k - 1][2]
        assert assistant.startswith(f"You said: {rows[2 * k - 2][2]}\n")
        assert assistant.endswith(f"({2 * k - 1} message{'s' if k > 1 else ''} in context)")
    assert sorted(answers) == sorted(row[2] for row in rows[1::2])
    assert set(
        Turn.objects.filter(session__external_id="busy", organization=tenant.organization).values_list(
            "status", flat=True
        )
    ) == {"completed"}


def test_idempotency_key_makes_a_repeat_return_the_same_answer(client, tenant):
    headers = {"Idempotency-Key": "order-1234"}
    first = client.chat.completions.create(
        model="echo", messages=[user("pay")], extra_body={"session_id": "idem"}, extra_headers=headers
    )
    time.sleep(RETRY_WINDOW_SECONDS + 0.5)  # past the retry window: only the key can match
    again = client.chat.completions.create(
        model="echo", messages=[user("pay")], extra_body={"session_id": "idem"}, extra_headers=headers
    )
    assert again.id == first.id
    assert len(transcript(tenant, "idem")) == 2


def test_idempotency_key_reused_for_another_request_is_refused(client, tenant):
    headers = {"Idempotency-Key": "k-1"}
    client.chat.completions.create(model="echo", messages=[user("a")], extra_headers=headers)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="echo", messages=[user("b")], extra_headers=headers)
    assert raised.value.status_code == 400
    assert raised.value.body == {
        "message": "This Idempotency-Key was already used with a different request.",
        "type": "invalid_request_error",
        "param": "Idempotency-Key",
        "code": "idempotency_key_reused",
    }
    assert Message.objects.filter(session__organization=tenant.organization).count() == 2


def test_a_resend_within_the_retry_window_is_recognised(client, tenant):
    first = client.chat.completions.create(
        model="echo", messages=[user("once")], extra_body={"session_id": "r-1"}
    )
    resent = client.chat.completions.create(
        model="echo", messages=[user("once")], extra_body={"session_id": "r-1"}
    )
    assert resent.id == first.id
    assert len(transcript(tenant, "r-1")) == 2


def test_the_same_message_after_the_retry_window_is_a_new_turn(client, tenant):
    client.chat.completions.create(model="echo", messages=[user("again")], extra_body={"session_id": "r-2"})
    time.sleep(RETRY_WINDOW_SECONDS + 0.5)
    client.chat.completions.create(model="echo", messages=[user("again")], extra_body={"session_id": "r-2"})
    assert [row[1] for row in transcript(tenant, "r-2")] == ["user", "assistant", "user", "assistant"]


def test_an_sdk_retry_after_the_window_is_still_recognised(client, tenant, stack):
    first = client.chat.completions.create(
        model="echo", messages=[user("retry me")], extra_body={"session_id": "r-3"}
    )
    time.sleep(RETRY_WINDOW_SECONDS + 0.5)
    retried = client.chat.completions.create(
        model="echo",
        messages=[user("retry me")],
        extra_body={"session_id": "r-3"},
        extra_headers={"X-Stainless-Retry-Count": "1"},
    )
    assert retried.id == first.id
    assert len(transcript(tenant, "r-3")) == 2


def test_slow_turn_answers_504_keeps_running_and_is_stored(client, tenant):
    # given an agent slower than the server's wait
    Agent.objects.create(
        organization=tenant.organization,
        slug="slow",
        name="Slow",
        backend_config={"delay_seconds": TURN_WAIT_SECONDS + 2},
    )
    # when
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model="slow", messages=[user("take your time")], extra_body={"session_id": "slow-1"}
        )
    # then the client gets a 504 envelope, and the user's message is already stored
    assert raised.value.status_code == 504
    assert raised.value.body["code"] == "turn_timeout"
    assert raised.value.response.headers["X-Session-Id"] == "slow-1"
    assert time.monotonic() - started >= TURN_WAIT_SECONDS
    assert transcript(tenant, "slow-1") == [(1, "user", "take your time")]
    # and the turn goes on to the end and its answer is stored
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(transcript(tenant, "slow-1")) < 2:
        time.sleep(0.2)
    assert transcript(tenant, "slow-1")[1] == (
        2,
        "assistant",
        "You said: take your time\n(1 message in context)",
    )
    assert (
        Turn.objects.get(session__external_id="slow-1", organization=tenant.organization).status
        == "completed"
    )


def test_failed_turn_is_recorded_and_a_retry_does_not_store_the_message_twice(client, tenant):
    # given an agent whose backend this server does not have (a fault on the server's side)
    agent = Agent.objects.create(
        organization=tenant.organization, slug="broken", name="Broken", backend="gone"
    )
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(
            model="broken", messages=[user("hello?")], extra_body={"session_id": "f-1"}
        )
    assert raised.value.body["code"] == "agent_error"
    failed = Turn.objects.get(session__external_id="f-1", organization=tenant.organization)
    assert failed.status == "failed"
    assert failed.error["error"]["type"] == "server_error"
    # when the operator fixes the agent and the client sends the same message again
    Agent.objects.filter(pk=agent.pk).update(backend="echo")
    completion = client.chat.completions.create(
        model="broken", messages=[user("hello?")], extra_body={"session_id": "f-1"}
    )
    # then the unanswered message is not stored a second time
    assert completion.choices[0].message.content == "You said: hello?\n(1 message in context)"
    assert [row[1] for row in transcript(tenant, "f-1")] == ["user", "assistant"]


def test_raw_http_answer_has_the_exact_openai_shape(stack, tenant):
    response = httpx.post(
        f"{stack.api_url}/chat/completions",
        headers={"Authorization": f"Bearer {tenant.key}", "X-Request-Id": "trace-abc.1"},
        json={"model": "echo", "messages": [user("shape")], "session_id": "shape-1"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "trace-abc.1"
    body = response.json()
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "service_tier",
        "choices",
        "usage",
        "session_id",
    }
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "You said: shape\n(1 message in context)",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    assert body["id"] == "chatcmpl-" + response.headers["X-Turn-Id"].removeprefix("turn_")
