"""What an agent or a tool answers may hold text that PostgreSQL cannot store (a NUL, a lone
surrogate: JSON carries both as escapes). It does not fail the turn: each becomes U+FFFD, in the
stream, the answer and the stored transcript alike. Through real loopback fakes of a webhook, an
upstream and an HTTP tool's endpoint."""

from __future__ import annotations

import uuid

import pytest

from agents.services import agent_create
from sessions.models import Message, Turn
from tests.conftest import Tenant
from tests.fakes import WEBHOOK_SECRET, FakeServer
from tests.live import Stack, api
from tests.sse import post_stream

# UNSTORABLE_TEXT as Parley passes it on and keeps it.
STORED_TEXT = "nul[\ufffd] surrogate[\ufffd]"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def stored(tenant: Tenant, session_id: str) -> list[tuple[str, object]]:
    return list(
        Message.objects.filter(
            session__organization=tenant.organization, session__external_id=session_id
        ).values_list("role", "content")
    )


def ask(stack: Stack, tenant: Tenant, model: str, text: str, session_id: str, *, stream: bool) -> str:
    """The answer's text, streamed or not; the turn it ran must have completed."""
    body = {"model": model, "messages": [user(text)], "session_id": session_id, "stream": stream}
    if stream:
        response, read = post_stream(f"{stack.api_url}/chat/completions", tenant.key, body)
        assert response.status_code == 200
        assert (read.done_count, read.errors) == (1, [])
        content = read.content()
    else:
        response = api(stack, tenant, "POST", "/chat/completions", json=body)
        assert response.status_code == 200, response.text
        content = response.json()["choices"][0]["message"]["content"]
    assert Turn.objects.get(pk=response.headers["X-Turn-Id"]).status == Turn.Status.COMPLETED
    return content


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("path", ["/unstorable", "/unstorable-sse"], ids=["json-answer", "sse-answer"])
def test_a_webhooks_nul_and_lone_surrogate_become_replacement_characters(
    stack: Stack, tenant: Tenant, fake_webhook: FakeServer, path: str, stream: bool
) -> None:
    # given a webhook whose answer holds a NUL and a lone surrogate
    agent_create(
        organization=tenant.organization,
        slug="hook",
        backend="webhook",
        backend_config={"url": f"{fake_webhook.url}{path}", "secret": WEBHOOK_SECRET},
    )
    word = uuid.uuid4().hex[:8]
    session_id = f"unstorable-{word}"
    # when a turn is answered by it
    content = ask(stack, tenant, "hook", f"hello {word}", session_id, stream=stream)
    # then the client sees, and the session keeps, the answer with U+FFFD in their place
    assert content == f"{STORED_TEXT} hello {word}"
    assert stored(tenant, session_id) == [
        ("user", f"hello {word}"),
        ("assistant", f"{STORED_TEXT} hello {word}"),
    ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_http_tools_nul_and_lone_surrogate_become_replacement_characters(
    stack: Stack, tenant: Tenant, fake_upstream: FakeServer, fake_webhook: FakeServer, stream: bool
) -> None:
    # given an upstream that calls the `calculator` tool and then answers with what it said, and a
    # tenant's HTTP tool of that name whose endpoint answers with a NUL and a lone surrogate
    agent_create(
        organization=tenant.organization,
        slug="support",
        backend="openai",
        backend_config={"base_url": f"{fake_upstream.url}/v1", "model": "fake-calc"},
        tools=[
            {
                "type": "http",
                "name": "calculator",
                "url": f"{fake_webhook.url}/unstorable-tool",
                "secret": WEBHOOK_SECRET,
            }
        ],
    )
    word = uuid.uuid4().hex[:8]
    session_id = f"unstorable-tool-{word}"
    # when a turn runs the tool
    content = ask(stack, tenant, "support", f"compute {word}", session_id, stream=stream)
    # then the tool's result reached the model and the session with U+FFFD in their place, and
    # so did the answer that quotes it
    assert content == f"The tools said: {STORED_TEXT}"
    messages = stored(tenant, session_id)
    assert [role for role, _ in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[2] == ("tool", STORED_TEXT)
    assert messages[3] == ("assistant", f"The tools said: {STORED_TEXT}")
    tool_calls = fake_webhook.received(session_id)
    assert [request.path for request in tool_calls] == ["/unstorable-tool"]
    upstream_calls = fake_upstream.received(f"compute {word}")
    assert len(upstream_calls) == 2
    assert upstream_calls[1].json["messages"][-1] == {
        "role": "tool",
        "tool_call_id": upstream_calls[1].json["messages"][-2]["tool_calls"][0]["id"],
        "content": STORED_TEXT,
    }
