"""Limits per API key and per organization (sessions/limits): requests per minute, tokens per
day, concurrent turns; counted so that they hold across processes (Redis in production mode)."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, Organization
from accounts.services import api_key_create
from agents.services import agent_create
from config.errors import RateLimited
from sessions.limits import InProcessCounters, RedisCounters, Scope, limits_bind, limits_reserve
from sessions.models import Message, Session, Turn
from tests.conftest import STACK
from tests.live import start_web, stop
from tests.test_turn_claims import new_session, queued_turn


def chat(
    url: str,
    key: str,
    text: str,
    *,
    model: str = "echo",
    session_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body: dict = {"model": model, "messages": [{"role": "user", "content": text}]}
    if session_id is not None:
        body["session_id"] = session_id
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        timeout=30,
    )


def limit_key(tenant, **limits) -> None:
    ApiKey.objects.filter(pk=tenant.api_key.pk).update(**limits)


def limit_organization(tenant, **limits) -> None:
    Organization.objects.filter(pk=tenant.organization.pk).update(**limits)


def turns_of(tenant) -> int:
    return Turn.objects.filter(organization=tenant.organization).count()


def assert_refused(response: httpx.Response, *, code: str, error_type: str) -> int:
    """The 429 envelope; returns its Retry-After."""
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, error_type)
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def slow_agent(tenant, seconds: float = 2) -> str:
    agent_create(
        organization=tenant.organization,
        slug="slow",
        backend="echo",
        backend_config={"delay_seconds": seconds},
    )
    return "slow"


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- requests per minute --------------------------------------------------------------------------


def test_the_request_over_a_keys_requests_per_minute_is_refused_with_retry_after(stack, tenant):
    limit_key(tenant, requests_per_minute=3)
    for number in range(3):
        assert chat(stack.url, tenant.key, f"hello {number}").status_code == 200
    # when the fourth request of the minute comes
    refused = chat(stack.url, tenant.key, "one too many", session_id="refused-session")
    # then it is refused, and nothing of it was stored
    retry_after = assert_refused(refused, code="rate_limit_exceeded", error_type="rate_limit_error")
    assert retry_after <= 60
    assert "requests per minute on API key 'test': limit 3" in refused.json()["error"]["message"]
    assert turns_of(tenant) == 3
    assert not Session.objects.filter(
        organization=tenant.organization, external_id="refused-session"
    ).exists()
    assert not Message.objects.filter(
        session__organization=tenant.organization, content="one too many"
    ).exists()


def test_the_organizations_requests_per_minute_hold_across_its_keys(stack, tenant):
    limit_organization(tenant, requests_per_minute=3)
    second_key = api_key_create(organization=tenant.organization, name="second").secret
    assert chat(stack.url, tenant.key, "a").status_code == 200
    assert chat(stack.url, second_key, "b").status_code == 200
    assert chat(stack.url, tenant.key, "c").status_code == 200
    # when either key asks again within the minute
    for key in (second_key, tenant.key):
        refused = chat(stack.url, key, "over")
        assert_refused(refused, code="rate_limit_exceeded", error_type="rate_limit_error")
        assert f"organization {tenant.organization.slug}: limit 3" in refused.json()["error"]["message"]
    assert turns_of(tenant) == 3


def test_a_signed_in_user_is_held_to_the_organizations_limits(stack, tenant, org_member):
    limit_organization(tenant, requests_per_minute=2)
    signed_in = httpx.post(
        f"{stack.api_url}/auth/token",
        json={"username": org_member.user.username, "password": org_member.password},
        timeout=30,
    )
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["access"]
    assert chat(stack.url, token, "as a user").status_code == 200
    assert chat(stack.url, tenant.key, "as a key").status_code == 200
    # the user's JWT and the organization's keys share the organization's count
    refused = chat(stack.url, token, "over")
    assert_refused(refused, code="rate_limit_exceeded", error_type="rate_limit_error")
    assert f"organization {tenant.organization.slug}: limit 2" in refused.json()["error"]["message"]
    assert turns_of(tenant) == 2


def test_another_organizations_limit_does_not_touch_this_one(stack, tenant, other_tenant):
    limit_organization(other_tenant, requests_per_minute=1)
    assert chat(stack.url, other_tenant.key, "theirs").status_code == 200
    assert chat(stack.url, other_tenant.key, "theirs again").status_code == 429
    assert [chat(stack.url, tenant.key, f"ours {n}").status_code for n in range(3)] == [200, 200, 200]


def test_requests_that_start_no_turn_are_not_counted(stack, tenant):
    limit_key(tenant, requests_per_minute=1)
    auth = {"Authorization": f"Bearer {tenant.key}"}
    # other API calls, and chat requests refused before a turn exists, count nothing
    assert httpx.get(f"{stack.url}/v1/models", headers=auth).status_code == 200
    assert httpx.get(f"{stack.url}/v1/sessions", headers=auth).status_code == 200
    assert chat(stack.url, tenant.key, "hi", model="no-such-agent").status_code == 404
    # so the one request of the minute still passes
    assert chat(stack.url, tenant.key, "counted").status_code == 200
    assert chat(stack.url, tenant.key, "over").status_code == 429


def test_a_retry_answered_by_its_earlier_turn_counts_once(stack, tenant):
    limit_key(tenant, requests_per_minute=3)
    first = chat(stack.url, tenant.key, "once", headers={"Idempotency-Key": "idem-1"})
    assert first.status_code == 200
    # given the same request again, with its Idempotency-Key and as an SDK retry
    again = chat(stack.url, tenant.key, "once", headers={"Idempotency-Key": "idem-1"})
    retried = chat(
        stack.url,
        tenant.key,
        "twice",
        session_id=first.headers["X-Session-Id"],
        headers={"X-Stainless-Retry-Count": "0"},
    )
    retry_of_retried = chat(
        stack.url,
        tenant.key,
        "twice",
        session_id=first.headers["X-Session-Id"],
        headers={"X-Stainless-Retry-Count": "1"},
    )
    # then they were answered by their turns and counted once each: one more request fits
    assert again.headers["X-Turn-Id"] == first.headers["X-Turn-Id"]
    assert retry_of_retried.headers["X-Turn-Id"] == retried.headers["X-Turn-Id"]
    assert turns_of(tenant) == 2
    assert chat(stack.url, tenant.key, "new").status_code == 200
    assert_refused(
        chat(stack.url, tenant.key, "newer"), code="rate_limit_exceeded", error_type="rate_limit_error"
    )
    # and a retry with an Idempotency-Key still gets its answer at the limit: it starts nothing
    at_limit = chat(stack.url, tenant.key, "once", headers={"Idempotency-Key": "idem-1"})
    assert at_limit.status_code == 200
    assert at_limit.json()["id"] == first.json()["id"]
    assert turns_of(tenant) == 3


# --- tokens per day ---------------------------------------------------------------------------------


def seconds_to_utc_midnight() -> float:
    now = datetime.now(UTC)
    return (
        datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC) - now
    ).total_seconds()


def test_a_used_up_daily_token_quota_is_insufficient_quota_until_utc_midnight(stack, tenant):
    limit_key(tenant, tokens_per_day=20)
    # given requests that used up the quota (the last one may go over it: it was allowed to start)
    used, answered = 0, 0
    while used < 20:
        answer = chat(stack.url, tenant.key, "count my tokens please")
        assert answer.status_code == 200
        used, answered = used + answer.json()["usage"]["total_tokens"], answered + 1
    # when the next request comes
    refused = chat(stack.url, tenant.key, "more")
    # then it is refused until the next UTC day
    retry_after = assert_refused(refused, code="insufficient_quota", error_type="insufficient_quota")
    assert abs(retry_after - seconds_to_utc_midnight()) <= 5
    assert "token quota of 20 tokens per day on API key 'test'" in refused.json()["error"]["message"]
    assert turns_of(tenant) == answered


def test_the_organizations_token_quota_holds_across_its_keys(stack, tenant):
    limit_organization(tenant, tokens_per_day=1)
    second_key = api_key_create(organization=tenant.organization, name="second").secret
    assert chat(stack.url, tenant.key, "spend it").status_code == 200
    refused = chat(stack.url, second_key, "nothing left")
    assert_refused(refused, code="insufficient_quota", error_type="insufficient_quota")
    assert turns_of(tenant) == 1


# --- concurrent turns -------------------------------------------------------------------------------


def in_background(function, *args, **kwargs):
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def unfinished_turns(tenant) -> int:
    return Turn.objects.filter(organization=tenant.organization, status__in=["queued", "running"]).count()


def test_a_second_concurrent_turn_is_refused_until_the_first_finished(stack, tenant):
    limit_key(tenant, concurrent_turns=1)
    model = slow_agent(tenant)
    first = in_background(chat, stack.url, tenant.key, "slow one", model=model)
    wait_for(lambda: unfinished_turns(tenant) == 1)
    # when a second request comes while the first runs
    refused = chat(stack.url, tenant.key, "meanwhile")
    # then it is refused with Retry-After 1, and stores nothing
    assert assert_refused(refused, code="rate_limit_exceeded", error_type="rate_limit_error") == 1
    assert "concurrent turns on API key 'test': limit 1" in refused.json()["error"]["message"]
    assert turns_of(tenant) == 1
    # and once the first finished, a new one passes
    assert first.result().status_code == 200
    assert chat(stack.url, tenant.key, "after").status_code == 200
    assert turns_of(tenant) == 2


def test_an_idempotent_retry_of_a_running_turn_takes_no_second_slot(stack, tenant):
    limit_key(tenant, concurrent_turns=1)
    model = slow_agent(tenant)
    headers = {"Idempotency-Key": f"slow-{uuid.uuid4().hex}"}
    first = in_background(chat, stack.url, tenant.key, "slow one", model=model, headers=headers)
    wait_for(lambda: unfinished_turns(tenant) == 1)
    # a retry while the turn runs is told to come back (not refused by the limit: it starts nothing)
    meanwhile = chat(stack.url, tenant.key, "slow one", model=model, headers=headers)
    running = Turn.objects.get(organization=tenant.organization).id
    assert meanwhile.status_code == 409
    assert meanwhile.json() == {
        "error": {
            "message": f"Another request with this Idempotency-Key is still being answered (turn {running}). "
            f"Retry once it has finished, or follow it with GET /v1/turns/{running}/events.",
            "type": "invalid_request_error",
            "param": "Idempotency-Key",
            "code": "idempotency_key_in_use",
        }
    }
    assert meanwhile.headers["Retry-After"] == "1"
    # and once it has finished, gets its answer
    first_turn = first.result().headers["X-Turn-Id"]
    retry = chat(stack.url, tenant.key, "slow one", model=model, headers=headers)
    assert retry.status_code == 200
    assert retry.headers["X-Turn-Id"] == first_turn
    assert turns_of(tenant) == 1
    # the one slot was freed once: the next request passes
    assert chat(stack.url, tenant.key, "next").status_code == 200


def test_the_organizations_concurrent_turns_hold_across_its_keys(stack, tenant):
    limit_organization(tenant, concurrent_turns=1)
    second_key = api_key_create(organization=tenant.organization, name="second").secret
    model = slow_agent(tenant)
    first = in_background(chat, stack.url, tenant.key, "slow one", model=model)
    wait_for(lambda: unfinished_turns(tenant) == 1)
    refused = chat(stack.url, second_key, "meanwhile")
    assert_refused(refused, code="rate_limit_exceeded", error_type="rate_limit_error")
    assert first.result().status_code == 200


# What a chat request (not streamed) whose turn was cancelled gets.
TURN_CANCELLED = {
    "error": {
        "message": "The turn was cancelled.",
        "type": "invalid_request_error",
        "param": None,
        "code": "turn_cancelled",
    }
}


def test_cancelled_turns_free_their_slots_running_or_queued(stack, tenant):
    limit_key(tenant, concurrent_turns=2)
    model = slow_agent(tenant, seconds=3)
    auth = {"Authorization": f"Bearer {tenant.key}"}
    # given a running turn and a second one queued behind it in the same session
    running = in_background(chat, stack.url, tenant.key, "first", model=model, session_id="busy")
    wait_for(lambda: Turn.objects.filter(organization=tenant.organization, status="running").count() == 1)
    queued = in_background(chat, stack.url, tenant.key, "second", model=model, session_id="busy")
    wait_for(lambda: Turn.objects.filter(organization=tenant.organization, status="queued").count() == 1)
    assert_refused(
        chat(stack.url, tenant.key, "third"), code="rate_limit_exceeded", error_type="rate_limit_error"
    )
    # when the queued one is cancelled, its slot is free at once
    queued_id = Turn.objects.get(organization=tenant.organization, status="queued").id
    assert httpx.post(f"{stack.url}/v1/turns/{queued_id}/cancel", headers=auth).status_code == 200
    assert chat(stack.url, tenant.key, "third").status_code == 200
    # when the running one is cancelled, its slot is free once its runner stopped
    running_id = Turn.objects.get(
        organization=tenant.organization, session__external_id="busy", position=1
    ).id
    assert httpx.post(f"{stack.url}/v1/turns/{running_id}/cancel", headers=auth).status_code == 200
    for cancelled in (running.result(), queued.result()):
        assert (cancelled.status_code, cancelled.json()) == (400, TURN_CANCELLED)
    wait_for(lambda: Turn.objects.get(pk=running_id).finished_at is not None)
    # then both slots are free again: two slow turns run side by side
    fourth = in_background(chat, stack.url, tenant.key, "fourth", model=model)
    wait_for(lambda: unfinished_turns(tenant) == 1)
    assert chat(stack.url, tenant.key, "fifth", model=model).status_code == 200
    assert fourth.result().status_code == 200


# --- across processes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_web(stack):
    """Another web server of the same stack: same database, Redis, broker, settings."""
    url, process, _ = start_web(stack.env, Path(tempfile.mkdtemp(prefix="parley-test-web2-")), name="web2")
    yield url
    stop([process])


@pytest.mark.production_only  # the embedded mode runs one process by design
def test_requests_per_minute_hold_across_two_server_processes(stack, second_web, tenant):
    limit_key(tenant, requests_per_minute=4)
    servers = [stack.url, second_web]
    # when 10 requests alternate between the two servers
    statuses = [chat(servers[n % 2], tenant.key, f"request {n}").status_code for n in range(10)]
    # then exactly the limit passed, overall
    assert statuses == [200] * 4 + [429] * 6
    assert turns_of(tenant) == 4


@pytest.mark.production_only  # the embedded mode runs one process by design
def test_concurrent_requests_on_two_servers_never_pass_the_limit_together(stack, second_web, tenant):
    limit_key(tenant, requests_per_minute=5)
    servers = [stack.url, second_web]
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(
            pool.map(lambda n: chat(servers[n % 2], tenant.key, f"at once {n}").status_code, range(12))
        )
    assert sorted(statuses) == [200] * 5 + [429] * 7
    assert turns_of(tenant) == 5


@pytest.mark.production_only  # the embedded mode runs one process by design
def test_concurrent_turns_hold_across_two_server_processes(stack, second_web, tenant):
    limit_key(tenant, concurrent_turns=1)
    model = slow_agent(tenant)
    first = in_background(chat, stack.url, tenant.key, "slow one", model=model)
    wait_for(lambda: unfinished_turns(tenant) == 1)
    assert_refused(
        chat(second_web, tenant.key, "elsewhere"), code="rate_limit_exceeded", error_type="rate_limit_error"
    )
    assert first.result().status_code == 200
    assert chat(second_web, tenant.key, "after").status_code == 200


# --- the counters themselves ------------------------------------------------------------------------


# Redis runs in the production pass only; the in-process counters are tested in both.
@pytest.fixture(params=["in_process", "redis"] if STACK == "production" else ["in_process"])
def counters(request, stack):
    if request.param == "redis":
        return RedisCounters(settings.REDIS_URL)
    return InProcessCounters()


def fresh_scope(**limits) -> Scope:
    number = uuid.uuid4().int % 10**9
    return Scope(organization_id=number, kind="api_key", id=number, label="API key 'unit'", **limits)


def test_reservations_are_atomic_under_concurrency(counters):
    scope = fresh_scope(requests_per_minute=5, concurrent_turns=7)
    barrier = threading.Barrier(20)

    def reserve(n: int) -> bool:
        barrier.wait()
        refusal = counters.reserve(scopes=[scope], token=f"req_{n}", day=date.today(), lease_ms=60_000)
        return refusal is None

    with ThreadPoolExecutor(max_workers=20) as pool:
        admitted = list(pool.map(reserve, range(20)))
    assert admitted.count(True) == 5


def test_a_slot_left_by_a_dead_process_frees_itself_after_its_lease(counters):
    scope = fresh_scope(concurrent_turns=1)
    today = date.today()
    assert counters.reserve(scopes=[scope], token="req_a", day=today, lease_ms=300) is None
    assert counters.settle(scopes=[scope], token="req_a", turn_id="turn_dead", lease_ms=300)
    refusal = counters.reserve(scopes=[scope], token="req_b", day=today, lease_ms=300)
    assert refusal is not None
    assert (refusal.reason, refusal.holders) == ("turns", ("turn_dead",))
    time.sleep(0.4)
    assert counters.reserve(scopes=[scope], token="req_b", day=today, lease_ms=300) is None


def test_a_second_settlement_of_a_turn_gives_its_reservation_back(counters):
    scope = fresh_scope(requests_per_minute=2, concurrent_turns=2)
    today = date.today()
    for token in ("req_a", "req_b"):
        assert counters.reserve(scopes=[scope], token=token, day=today, lease_ms=60_000) is None
    assert counters.settle(scopes=[scope], token="req_a", turn_id="turn_x", lease_ms=60_000) is True
    assert counters.settle(scopes=[scope], token="req_b", turn_id="turn_x", lease_ms=60_000) is False
    # one request and one slot are held: one more of each fits
    assert counters.reserve(scopes=[scope], token="req_c", day=today, lease_ms=60_000) is None
    refusal = counters.reserve(scopes=[scope], token="req_d", day=today, lease_ms=60_000)
    assert refusal is not None and refusal.reason == "requests"


def test_finished_turns_free_their_slots_and_count_their_tokens(counters):
    scope = fresh_scope(tokens_per_day=10, concurrent_turns=1)
    today = date.today()
    assert counters.reserve(scopes=[scope], token="req_a", day=today, lease_ms=60_000) is None
    counters.settle(scopes=[scope], token="req_a", turn_id="turn_a", lease_ms=60_000)
    counters.finish(scopes=[scope], turn_id="turn_a", tokens=9, day=today)
    assert counters.reserve(scopes=[scope], token="req_b", day=today, lease_ms=60_000) is None
    counters.settle(scopes=[scope], token="req_b", turn_id="turn_b", lease_ms=60_000)
    counters.finish(scopes=[scope], turn_id="turn_b", tokens=1, day=today)
    refusal = counters.reserve(scopes=[scope], token="req_c", day=today, lease_ms=60_000)
    assert refusal is not None and refusal.reason == "tokens"
    # a new day has a new quota
    assert (
        counters.reserve(scopes=[scope], token="req_c", day=today + timedelta(days=1), lease_ms=60_000)
        is None
    )


def test_a_full_set_of_turns_drops_holders_the_database_knows_finished(tenant):
    # given an organization limited to one turn at a time, and a turn holding its slot
    limit_organization(tenant, concurrent_turns=1)
    organization = Organization.objects.get(pk=tenant.organization.pk)
    holder = queued_turn(new_session(tenant, "holder"), 1, "hi")
    limits_bind(limits_reserve(organization=organization, api_key=None), turn=holder)
    with pytest.raises(RateLimited):
        limits_reserve(organization=organization, api_key=None)
    # when the turn finishes but its release is lost (the process that ran it died)
    Turn.objects.filter(pk=holder.pk).update(status=Turn.Status.COMPLETED, finished_at=timezone.now())
    # then the database knows it finished, and its slot is taken back
    assert limits_reserve(organization=organization, api_key=None) is not None
