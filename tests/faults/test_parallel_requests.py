"""50 requests at once on one session, in both run modes (the live stack, plus a web process of the
test's own that waits long enough for 50 queued turns): the turns run one at a time, the transcript
alternates question and answer without a gap, each answer seeing every earlier one, and every
request is answered 200, or 429/409 with Retry-After (with a key limited to 5 concurrent turns);
never a 5xx."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sessions.models import Message, Turn
from tests.conftest import make_key
from tests.faults.stack import echo_answer, user
from tests.live import start_web, stop

pytestmark = [pytest.mark.faults]

REQUESTS = 50
CONCURRENT_TURNS_LIMIT = 5


@pytest.fixture(scope="module")
def patient_web(stack) -> Iterator[str]:
    """A web process of the live stack whose clients wait two minutes for their turn."""
    log_dir = Path(tempfile.mkdtemp(prefix="parley-parallel-"))
    url, web, _ = start_web({**stack.env, "PARLEY_TURN_WAIT_SECONDS": "120"}, log_dir, name="patient-web")
    try:
        yield url
    finally:
        stop([web])


def send_at_once(url: str, key: str, session_id: str) -> list[tuple[str, httpx.Response]]:
    """REQUESTS chat requests on one session, all at once; each with its question."""
    limits = httpx.Limits(max_connections=REQUESTS, max_keepalive_connections=0)
    with httpx.Client(limits=limits, timeout=180) as client:

        def ask(number: int) -> tuple[str, httpx.Response]:
            question = f"question {number}"
            body = {"model": "echo", "messages": [user(question)], "session_id": session_id}
            return question, client.post(
                f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )

        with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
            return list(pool.map(ask, range(REQUESTS)))


def assert_one_turn_at_a_time_and_each_answer_once(tenant, session_id: str, answered: dict[str, str]) -> None:
    messages = list(
        Message.objects.filter(session__organization=tenant.organization, session__external_id=session_id)
        .order_by("seq")
        .values_list("seq", "role", "content")
    )
    # gap-free and alternating: question, its answer, question, ...
    assert [seq for seq, _, _ in messages] == list(range(1, 2 * len(answered) + 1))
    assert [role for _, role, _ in messages] == ["user", "assistant"] * len(answered)
    questions = [content for _, role, content in messages if role == "user"]
    assert sorted(questions) == sorted(answered)
    # each answer saw every earlier question and answer (so its turn ran after theirs, and before
    # the next), and is what its request got
    for index, question in enumerate(questions):
        expected = echo_answer(question, earlier=questions[:index], in_context=2 * index + 1)
        assert messages[2 * index + 1][2] == expected
        assert answered[question] == expected
    statuses = Turn.objects.filter(organization=tenant.organization, session__external_id=session_id)
    assert list(statuses.values_list("status", flat=True).distinct()) == ["completed"]


def test_fifty_requests_at_once_on_one_session_run_one_turn_at_a_time(stack, tenant, patient_web):
    started = time.monotonic()
    results = send_at_once(patient_web, tenant.key, "fifty")
    seconds = time.monotonic() - started
    statuses = sorted({response.status_code for _, response in results})
    first_others = [(r.status_code, r.text) for _, r in results if r.status_code != 200][:3]
    assert statuses == [200], first_others
    answered = {
        question: response.json()["choices"][0]["message"]["content"] for question, response in results
    }
    assert_one_turn_at_a_time_and_each_answer_once(tenant, "fifty", answered)
    print(
        f"\n{stack.mode}: {REQUESTS} requests at once on one session: all 200, one turn at a time, "
        f"{seconds:.1f} s"
    )


def test_fifty_requests_at_once_with_a_concurrency_limit_are_answered_200_or_429(stack, tenant, patient_web):
    key = make_key(tenant, ["chat"], concurrent_turns=CONCURRENT_TURNS_LIMIT)
    results = send_at_once(patient_web, key, "limited")
    answered, refused = {}, 0
    for question, response in results:
        if response.status_code == 200:
            answered[question] = response.json()["choices"][0]["message"]["content"]
            continue
        # never a 5xx: a refusal says when to come back
        assert response.status_code in (409, 429), (response.status_code, response.text)
        assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
        if response.status_code == 429:
            limit = CONCURRENT_TURNS_LIMIT
            assert response.json() == {
                "error": {
                    "message": f"Too many concurrent turns on API key 'scoped': limit {limit}. "
                    "Please try again when a turn has finished.",
                    "type": "rate_limit_error",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            }
        refused += 1
    assert CONCURRENT_TURNS_LIMIT <= len(answered) < REQUESTS
    # the refused requests stored nothing; the others one turn at a time
    assert_one_turn_at_a_time_and_each_answer_once(tenant, "limited", answered)
    print(
        f"\n{stack.mode}: {REQUESTS} requests at once, {CONCURRENT_TURNS_LIMIT} concurrent turns allowed: "
        f"{len(answered)} answered 200, {refused} refused 429 with Retry-After, none 5xx"
    )
