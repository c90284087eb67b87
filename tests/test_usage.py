"""Usage: a record per finished turn (sessions/usage.py) and GET /v1/usage."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from accounts.services import api_key_create
from agents.models import Agent
from agents.services import agent_create
from sessions.models import Turn, UsageRecord
from tests.conftest import make_key


def chat(stack, key: str, text: str, *, model: str = "echo", session_id: str | None = None) -> httpx.Response:
    body: dict = {"model": model, "messages": [{"role": "user", "content": text}]}
    if session_id is not None:
        body["session_id"] = session_id
    return httpx.post(
        f"{stack.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def usage(stack, key: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{stack.url}/v1/usage", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def latency_ms(turn: Turn) -> int:
    return round((turn.finished_at - turn.queued_at) / timedelta(milliseconds=1))


# --- records ----------------------------------------------------------------------------------------


def test_a_completed_turn_records_its_tokens_latency_key_agent_and_session(stack, tenant):
    answer = chat(stack, tenant.key, "how many tokens is this?", session_id="metered")
    assert answer.status_code == 200
    turn = Turn.objects.get(pk=answer.headers["X-Turn-Id"])
    record = UsageRecord.objects.get(turn=turn)
    assert record.organization_id == tenant.organization.pk
    assert record.api_key_id == tenant.api_key.pk
    assert record.user_id is None
    assert (record.agent.slug, record.agent_slug) == ("echo", "echo")
    assert record.session.external_id == "metered"
    assert record.status == "completed"
    expected = answer.json()["usage"]
    assert (record.prompt_tokens, record.completion_tokens) == (
        expected["prompt_tokens"],
        expected["completion_tokens"],
    )
    assert record.prompt_tokens > 0 and record.completion_tokens > 0
    assert abs(record.latency_ms - latency_ms(turn)) <= 1


def test_a_failed_turn_is_recorded_as_failed(stack, tenant):
    agent_create(
        organization=tenant.organization,
        slug="broken",
        backend="echo",
        backend_config={"fail_after_chunks": 0},
    )
    answer = chat(stack, tenant.key, "fail please", model="broken")
    assert answer.status_code == 500
    turn = Turn.objects.get(pk=answer.headers["X-Turn-Id"])
    assert turn.status == "failed"
    record = UsageRecord.objects.get(turn=turn)
    assert (record.status, record.agent_slug, record.prompt_tokens, record.completion_tokens) == (
        "failed",
        "broken",
        0,
        0,
    )
    assert abs(record.latency_ms - latency_ms(turn)) <= 1


# What a chat request (not streamed) whose turn was cancelled gets.
TURN_CANCELLED = {
    "error": {
        "message": "The turn was cancelled.",
        "type": "invalid_request_error",
        "param": None,
        "code": "turn_cancelled",
    }
}


def test_cancelled_turns_running_or_queued_are_recorded_as_cancelled(stack, tenant):
    agent_create(
        organization=tenant.organization, slug="slow", backend="echo", backend_config={"delay_seconds": 3}
    )
    auth = {"Authorization": f"Bearer {tenant.key}"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(chat, stack, tenant.key, "first", model="slow", session_id="cancelling")
        wait_for(lambda: Turn.objects.filter(organization=tenant.organization, status="running").exists())
        second = pool.submit(chat, stack, tenant.key, "second", model="slow", session_id="cancelling")
        wait_for(lambda: Turn.objects.filter(organization=tenant.organization, status="queued").exists())
        running = Turn.objects.get(organization=tenant.organization, status="running")
        queued = Turn.objects.get(organization=tenant.organization, status="queued")
        for turn in (queued, running):
            assert httpx.post(f"{stack.url}/v1/turns/{turn.id}/cancel", headers=auth).status_code == 200
        for cancelled in (first.result(), second.result()):
            assert (cancelled.status_code, cancelled.json()) == (400, TURN_CANCELLED)
    wait_for(lambda: Turn.objects.get(pk=running.pk).finished_at is not None)
    records = {
        record.turn_id: record for record in UsageRecord.objects.filter(organization=tenant.organization)
    }
    assert set(records) == {running.id, queued.id}
    for turn in (running, queued):
        turn.refresh_from_db()
        usage_stored = turn.usage or {"prompt_tokens": 0, "completion_tokens": 0}
        record = records[turn.id]
        assert (record.status, record.prompt_tokens, record.completion_tokens) == (
            "cancelled",
            usage_stored["prompt_tokens"],
            usage_stored["completion_tokens"],
        )
        assert abs(record.latency_ms - latency_ms(turn)) <= 1


# --- GET /v1/usage ------------------------------------------------------------------------------------


def record(tenant, *, day: date, prompt: int, completion: int, agent: str = "echo", api_key=None) -> None:
    row = UsageRecord.objects.create(
        organization=tenant.organization,
        api_key=api_key,
        agent=Agent.objects.filter(organization=tenant.organization, slug=agent).first(),
        agent_slug=agent,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=100,
        status="completed",
    )
    # created is set on insert; place the record at noon of its day
    UsageRecord.objects.filter(pk=row.pk).update(
        created=datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    )


def counts(requests: int, prompt: int, completion: int) -> dict[str, int]:
    return {
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


@pytest.fixture
def history(tenant, other_tenant):
    """Usage over three days of the last 30, one older record, and another organization's."""
    today = datetime.now(UTC).date()
    second_key = api_key_create(organization=tenant.organization, name="second").api_key
    record(tenant, day=today - timedelta(days=2), prompt=10, completion=5, api_key=tenant.api_key)
    record(tenant, day=today - timedelta(days=2), prompt=20, completion=10, api_key=tenant.api_key)
    record(tenant, day=today - timedelta(days=1), prompt=7, completion=3, agent="writer", api_key=second_key)
    record(tenant, day=today, prompt=1, completion=2)  # a user's, with no key
    record(tenant, day=today - timedelta(days=30), prompt=1000, completion=1000, api_key=tenant.api_key)
    record(other_tenant, day=today, prompt=500, completion=500, api_key=other_tenant.api_key)
    return {"today": today, "second_key": second_key}


def test_usage_by_day_covers_the_last_30_days_by_default(stack, tenant, history):
    today = history["today"]
    answer = usage(stack, tenant.key)
    assert answer.status_code == 200
    assert answer.json() == {
        "object": "list",
        "group_by": "day",
        "start": (today - timedelta(days=29)).isoformat(),
        "end": today.isoformat(),
        "data": [
            {"day": (today - timedelta(days=2)).isoformat(), **counts(2, 30, 15)},
            {"day": (today - timedelta(days=1)).isoformat(), **counts(1, 7, 3)},
            {"day": today.isoformat(), **counts(1, 1, 2)},
        ],
        "totals": counts(4, 38, 20),
    }


def test_usage_by_agent_and_by_key(stack, tenant, history):
    by_agent = usage(stack, tenant.key, group_by="agent").json()
    assert by_agent["data"] == [
        {"agent": "echo", **counts(3, 31, 17)},
        {"agent": "writer", **counts(1, 7, 3)},
    ]
    assert by_agent["totals"] == counts(4, 38, 20)
    by_key = usage(stack, tenant.key, group_by="key").json()
    assert by_key["data"] == [
        {"api_key": tenant.api_key.pk, "api_key_name": "test", **counts(2, 30, 15)},
        {"api_key": history["second_key"].pk, "api_key_name": "second", **counts(1, 7, 3)},
        {"api_key": None, "api_key_name": None, **counts(1, 1, 2)},
    ]
    assert by_key["totals"] == counts(4, 38, 20)


def test_usage_over_a_chosen_range(stack, tenant, history):
    today = history["today"]
    one_day = (today - timedelta(days=1)).isoformat()
    answer = usage(stack, tenant.key, start=one_day, end=one_day, group_by="agent").json()
    assert answer["data"] == [{"agent": "writer", **counts(1, 7, 3)}]
    older = usage(stack, tenant.key, start=(today - timedelta(days=30)).isoformat()).json()
    assert older["data"][0] == {"day": (today - timedelta(days=30)).isoformat(), **counts(1, 1000, 1000)}
    assert older["totals"] == counts(5, 1038, 1020)


def test_another_organizations_usage_is_never_included(stack, tenant, other_tenant, history):
    theirs = usage(stack, other_tenant.key, group_by="key").json()
    assert theirs["data"] == [
        {"api_key": other_tenant.api_key.pk, "api_key_name": "test", **counts(1, 500, 500)}
    ]
    ours = usage(stack, tenant.key, group_by="key").json()
    assert other_tenant.api_key.pk not in [row["api_key"] for row in ours["data"]]
    assert ours["totals"] == counts(4, 38, 20)


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"start": "2025-13-01"}, "start"),
        ({"end": "31-01-2025"}, "end"),
        ({"start": "yesterday"}, "start"),
        ({"group_by": "week"}, "group_by"),
        ({"start": "2025-02-01", "end": "2025-01-31"}, "start"),
        ({"start": "2020-01-01", "end": "2025-01-01"}, "start"),
    ],
)
def test_bad_usage_parameters_are_refused_naming_the_parameter(stack, tenant, params, param):
    answer = usage(stack, tenant.key, **params)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param


def test_usage_needs_the_admin_scope(stack, tenant):
    chat_only = make_key(tenant, ["chat"])
    assert usage(stack, chat_only).status_code == 403


def test_every_finished_turn_has_one_usage_record_and_the_usage_counts_them(stack, tenant):
    answers = [chat(stack, tenant.key, f"message {n}") for n in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    prompt = sum(answer.json()["usage"]["prompt_tokens"] for answer in answers)
    completion = sum(answer.json()["usage"]["completion_tokens"] for answer in answers)
    assert UsageRecord.objects.filter(organization=tenant.organization).count() == 3
    assert usage(stack, tenant.key).json()["totals"] == counts(3, prompt, completion)


def test_a_users_turn_is_recorded_with_the_user(stack, tenant):
    from accounts.models import Membership
    from sessions.models import Turn, UsageRecord
    from tests.conftest import make_person

    person = make_person(tenant, Membership.Role.MEMBER)
    token = httpx.post(
        f"{stack.url}/v1/auth/token",
        json={"username": person.user.username, "password": person.password},
        timeout=30,
    ).json()["access"]
    response = httpx.post(
        f"{stack.api_url}/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "echo", "messages": [{"role": "user", "content": "as a person"}]},
        timeout=30,
    )
    assert response.status_code == 200
    turn = Turn.objects.get(pk=response.headers["X-Turn-Id"])
    assert (turn.user_id, turn.api_key_id) == (person.user.pk, None)
    record = UsageRecord.objects.get(turn=turn)
    assert (record.user_id, record.api_key_id) == (person.user.pk, None)
