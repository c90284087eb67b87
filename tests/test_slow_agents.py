"""Slow and stuck agents: a call to a webhook or an upstream ends at its deadline however the
answer trickles in, a cancel closes the connection to the agent within a second, one
organization's slow turns leave the in-process executor's threads to the others, and waiting
runners hold no database connection (agents/bounds.py, sessions/executors.py, config/db.py)."""

from __future__ import annotations

import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import httpx2
import pytest
from django.conf import settings

from agents.backends import backend_for
from agents.backends.base import AgentCall, ChoiceDelta, UsageReport
from agents.services import agent_create
from sessions.models import Turn
from tests.conftest import STACK, Tenant
from tests.fakes import WEBHOOK_SECRET, FakeServer
from tests.live import AGENT_CALL_SECONDS, Stack, api, start_web, stop
from tests.sse import post_stream


def marker() -> str:
    return f"m{uuid.uuid4().hex[:10]}"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def webhook_agent(tenant: Tenant, fake_webhook: FakeServer, path: str, slug: str = "hook") -> str:
    agent_create(
        organization=tenant.organization,
        slug=slug,
        backend="webhook",
        backend_config={"url": f"{fake_webhook.url}{path}", "secret": WEBHOOK_SECRET},
    )
    return slug


def upstream_agent(tenant: Tenant, fake_upstream: FakeServer, model: str, slug: str = "support") -> str:
    agent_create(
        organization=tenant.organization,
        slug=slug,
        backend="openai",
        backend_config={"base_url": f"{fake_upstream.url}/v1", "model": model},
    )
    return slug


def chat(stack_or_url: Stack | str, tenant: Tenant, model: str, text: str) -> httpx.Response:
    url = stack_or_url if isinstance(stack_or_url, str) else stack_or_url.url
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [user(text)]},
        headers={"Authorization": f"Bearer {tenant.key}"},
        timeout=30,
    )


def wait_for(condition, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def timeout_envelope(message: str, code: str) -> dict:
    return {"error": {"message": message, "type": "timeout_error", "param": None, "code": code}}


TURN_CANCELLED = {
    "error": {
        "message": "The turn was cancelled.",
        "type": "invalid_request_error",
        "param": None,
        "code": "turn_cancelled",
    }
}


# --- deadlines ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/trickle", id="event-stream-of-keep-alive-newlines"),
        pytest.param("/trickle-json", id="json-body-a-space-at-a-time"),
        pytest.param("/silent", id="no-answer-at-all"),
    ],
)
def test_a_webhook_that_never_finishes_fails_its_turn_at_the_deadline(stack, tenant, fake_webhook, path):
    model = webhook_agent(tenant, fake_webhook, path)
    word = marker()
    started = time.monotonic()

    response = chat(stack, tenant, model, word)

    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json() == timeout_envelope(
        f"The webhook did not finish its answer within {AGENT_CALL_SECONDS} s.", "webhook_timeout"
    )
    assert AGENT_CALL_SECONDS <= elapsed < AGENT_CALL_SECONDS + 2
    turn = Turn.objects.get(pk=response.headers["X-Turn-Id"])
    assert (turn.status, turn.error["status"], turn.error["error"]["code"]) == (
        "failed",
        504,
        "webhook_timeout",
    )
    # the connection to the webhook was closed, not left to the webhook
    assert fake_webhook.wait_until_gone(word, timeout=2) is not None
    assert len(fake_webhook.received(word)) == 1  # a deadline passed is not retried


def test_an_upstream_that_never_finishes_fails_its_turn_at_the_deadline(stack, tenant, fake_upstream):
    model = upstream_agent(tenant, fake_upstream, "fake-trickle")
    word = marker()
    started = time.monotonic()

    response = chat(stack, tenant, model, word)

    assert response.status_code == 504, response.text
    assert response.json() == timeout_envelope(
        f"The upstream model did not finish its answer within {AGENT_CALL_SECONDS} s.", "upstream_timeout"
    )
    assert AGENT_CALL_SECONDS <= time.monotonic() - started < AGENT_CALL_SECONDS + 2
    assert fake_upstream.wait_until_gone(word, timeout=2) is not None


def test_a_webhook_event_stream_is_capped_in_size(stack, tenant, fake_webhook):
    model = webhook_agent(tenant, fake_webhook, "/flood")

    response = chat(stack, tenant, model, marker())

    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": "The response from 127.0.0.1 is larger than 16777216 bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": "response_too_large",
        }
    }
    assert Turn.objects.get(pk=response.headers["X-Turn-Id"]).status == "failed"


# --- cancel ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["webhook", "openai"])
def test_a_cancel_closes_the_connection_to_the_agent_within_a_second(
    stack, tenant, fake_webhook, fake_upstream, backend
):
    # given a turn whose agent sent one chunk and since then only keep-alive newlines
    if backend == "webhook":
        fake, model = fake_webhook, webhook_agent(tenant, fake_webhook, "/trickle")
    else:
        fake, model = fake_upstream, upstream_agent(tenant, fake_upstream, "fake-trickle")
    word = marker()
    response, first = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": model, "messages": [user(word)], "stream": True},
        stop_after=1,
    )
    assert "thinking" in first.events[0].data
    turn_id = response.headers["X-Turn-Id"]
    assert word not in fake.gone

    # when the turn is cancelled
    cancelled_at = time.monotonic()
    cancelled = api(stack, tenant, "POST", f"/turns/{turn_id}/cancel")

    # then the agent's connection is closed within a second
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    gone_at = fake.wait_until_gone(word, timeout=5)
    assert gone_at is not None, "the connection to the agent stayed open"
    assert gone_at - cancelled_at < 1.0
    wait_for(lambda: Turn.objects.get(pk=turn_id).finished_at is not None, timeout=5, what="the wind-up")
    assert Turn.objects.get(pk=turn_id).status == "cancelled"


# --- the webhook's client ------------------------------------------------------------------------


def test_calls_to_a_webhook_share_one_client_and_reuse_its_connection(fake_webhook):
    config = backend_for("webhook").validate_config(
        {"url": f"{fake_webhook.url}/json", "secret": WEBHOOK_SECRET}, previous={}
    )
    words = [marker(), marker(), marker()]

    for word in words:
        answer = list(
            backend_for("webhook").stream(AgentCall(messages=[user(word)], params={}, backend_config=config))
        )
        assert answer == [
            ChoiceDelta(index=0, delta={"role": "assistant", "content": f"hook says: {word}"}),
            ChoiceDelta(index=0, delta={}, finish_reason="stop"),
            UsageReport(5, 3),
        ]

    # one connection, kept open for the next call: none is opened per call and left behind
    ports = [request.client_port for word in words for request in fake_webhook.received(word)]
    assert len(ports) == 3 and len(set(ports)) == 1


def test_a_stopped_call_drops_its_connection_at_once(fake_webhook):
    config = backend_for("webhook").validate_config(
        {"url": f"{fake_webhook.url}/trickle", "secret": WEBHOOK_SECRET}, previous={}
    )
    word = marker()
    call = AgentCall(messages=[user(word)], params={}, backend_config=config)
    received: list = []

    def consume() -> None:  # on a thread of its own, as the runner's agent thread does
        for item in backend_for("webhook").stream(call):
            received.append(item)

    with ThreadPoolExecutor(max_workers=1) as pool:
        consuming = pool.submit(consume)
        wait_for(lambda: received, timeout=5, what="the first chunk")
        time.sleep(0.5)  # the backend now waits for a line that never comes

        # when the runner stops listening
        stopped_at = time.monotonic()
        call.stop.set()

        # then the read gives up and the connection is closed at once
        with pytest.raises(httpx2.ReadError):
            consuming.result(timeout=2)
    gone_at = fake_webhook.wait_until_gone(word, timeout=2)
    assert gone_at is not None and gone_at - stopped_at < 0.5
    assert received == [ChoiceDelta(index=0, delta={"content": "thinking"})]


# --- the in-process executor is shared fairly -------------------------------------------------------


@pytest.mark.skipif(
    STACK == "production",
    reason="the in-process executor's share per organization; Celery workers are scaled by the operator",
)
def test_an_organizations_stuck_turns_leave_the_executor_to_the_others(stack, tenant, other_tenant):
    # given as many streamed turns of one organization as the executor has threads, each on an
    # agent that stays silent for 30 s
    agent_create(
        organization=tenant.organization, slug="stuck", backend="echo", backend_config={"delay_seconds": 30}
    )
    count, share = settings.PARLEY_INLINE_WORKERS, settings.PARLEY_INLINE_TURNS_PER_ORGANIZATION
    organization_turns = Turn.objects.filter(organization=tenant.organization)
    with ThreadPoolExecutor(max_workers=count) as pool:
        streams = [
            pool.submit(
                post_stream,
                f"{stack.api_url}/chat/completions",
                tenant.key,
                {"model": "stuck", "messages": [user(f"stuck {n}")], "stream": True},
            )
            for n in range(count)
        ]
        wait_for(
            lambda: (
                organization_turns.count() == count and organization_turns.filter(status="running").count()
            ),
            timeout=30,
            what="the stuck turns",
        )
        time.sleep(0.5)
        # then only the organization's share of them holds a thread; the others wait their turn
        assert organization_turns.filter(status="running").count() == share
        assert organization_turns.filter(status="queued").count() == count - share

        # when another organization asks its echo agent
        started = time.monotonic()
        answer = chat(stack, other_tenant, "echo", "are you there?")

        # then it is answered at once
        assert time.monotonic() - started < 2
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == (
            "You said: are you there?\n(1 message in context)"
        )

        # and the stuck turns, cancelled, end their streams with the cancel
        with ThreadPoolExecutor(max_workers=8) as cancels:
            cancelled = list(
                cancels.map(
                    lambda turn_id: api(stack, tenant, "POST", f"/turns/{turn_id}/cancel"),
                    organization_turns.values_list("pk", flat=True),
                )
            )
        assert [response.status_code for response in cancelled] == [200] * count
        ends = [future.result(timeout=30) for future in streams]
    assert [(response.status_code, read.errors, read.done_count) for response, read in ends] == [
        (200, [TURN_CANCELLED], 0)
    ] * count


# --- waiting runners hold no database connection ---------------------------------------------------


@pytest.mark.production_only  # the pool is psycopg's, on PostgreSQL
def test_runners_waiting_on_their_agents_do_not_use_up_the_connection_pool(stack, tenant, other_tenant):
    # given a web process with the in-process executor and a pool of 6 connections
    pool_size, slow_turns, slow_seconds = 6, 12, 10
    log_dir = Path(tempfile.mkdtemp(prefix="parley-test-inline-pool-"))
    env = {
        **stack.env,
        "PARLEY_EXECUTOR": "inline",
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": str(pool_size),
        "PARLEY_INLINE_TURNS_PER_ORGANIZATION": str(slow_turns),
    }
    url, web, _ = start_web(env, log_dir, name="web-inline-pool")
    try:
        agent_create(
            organization=tenant.organization,
            slug="slow",
            backend="echo",
            backend_config={"delay_seconds": slow_seconds},
        )
        assert chat(url, other_tenant, "echo", "warm up").status_code == 200  # a fresh process's imports
        with ThreadPoolExecutor(max_workers=slow_turns + 8) as pool:
            # when twice as many turns as the pool has connections wait on their agent
            slow = [
                pool.submit(
                    post_stream,
                    f"{url}/v1/chat/completions",
                    tenant.key,
                    {"model": "slow", "messages": [user(f"slow {n}")], "stream": True},
                )
                for n in range(slow_turns)
            ]
            # (each runner holding a connection, no more than the pool's 6 could even start)
            running = Turn.objects.filter(organization=tenant.organization, status="running")
            wait_for(lambda: running.count() == slow_turns, timeout=8, what="every slow turn to run")

            # then other requests are answered meanwhile, far within the pool's 30 s timeout
            def timed(request) -> tuple[httpx.Response, float]:
                started = time.monotonic()
                return request(), time.monotonic() - started

            def list_sessions() -> httpx.Response:
                return httpx.get(f"{url}/v1/sessions", headers={"Authorization": f"Bearer {tenant.key}"})

            requests = [
                pool.submit(timed, lambda n=n: chat(url, other_tenant, "echo", f"quick {n}"))
                for n in range(4)
            ] + [pool.submit(timed, list_sessions) for _ in range(4)]
            for future in requests:
                response, seconds = future.result(timeout=30)
                assert response.status_code == 200, response.text
                assert seconds < 4, f"a request waited {seconds:.1f} s for the database"
            assert running.count() == slow_turns  # all of that while every slow turn ran

            # and every slow turn is answered too
            for n, future in enumerate(slow):
                response, read = future.result(timeout=30)
                assert response.status_code == 200
                assert (read.content(), read.done_count, read.errors) == (
                    f"You said: slow {n}\n(1 message in context)",
                    1,
                    [],
                )
    finally:
        stop([web])
