"""Redis and PostgreSQL stopped and started again under load (production mode, servers of the
tests' own, tests/faults/servers.py), the same Parley processes running throughout.

- Redis is the channel layer that wakes the listeners and the broker that carries the turns, and
  a restart loses everything in it (no persistence). Every open stream still ends, with [DONE] or
  an error event, and is never silent longer than the keep-alive interval; following a turn again
  with Last-Event-ID gives each stored event once; every turn is answered once; a request made as
  soon as Redis is back is answered.
- While PostgreSQL is away every request is answered 503 database_unavailable in the envelope,
  with Retry-After, whatever the endpoint; afterwards the same processes serve again by themselves
  (the connection pool replaces its dead connections), and recovery finishes every turn that the
  outage interrupted: none is left running, none answered twice."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.stack import (
    KEEPALIVE_SECONDS,
    LEASE_SECONDS,
    BackgroundRequest,
    chat,
    echo_answer,
    first_turn,
    session_exists,
    signed_in_person,
    transcript,
    unfinished_turns,
    user,
    wait_until_final,
)
from tests.faults.streams import TimedStream, followed_to_the_end, ids_and_data, stored_stream, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.production_only]

# An open stream's listener re-reads the store every second, and sends a keep-alive when it has
# sent nothing for KEEPALIVE_SECONDS: a longer silence than this (with a second of room for a
# loaded machine) is a hang.
SILENCE_BOUND = KEEPALIVE_SECONDS + 2
REDIS_DOWN_SECONDS = 1.5
REDIS_STREAMS = 14

POSTGRES_STREAMS = 4
DATABASE_UNAVAILABLE = {
    "error": {
        "message": "The database is unavailable at the moment; try again shortly.",
        "type": "server_error",
        "param": None,
        "code": "database_unavailable",
    }
}
# The first requests of an outage wait for a connection for DB_POOL_TIMEOUT (5 s), and may queue
# for a free database thread behind as many others; once one has failed, the requests that reach
# the database through db_call are answered at once (but the one that tries the database again).
FIRST_ANSWER_BOUND = 15
KNOWN_OUTAGE_ANSWER_BOUND = 1


def test_redis_restarted_during_streams_ends_every_stream_and_loses_no_event(fault_stack):
    stack, tenant = fault_stack, fault_stack.tenant
    chat_url = f"{stack.api_url}/chat/completions"
    # given 14 streams of turns that take ~2 s each, four running at a time, the rest queued
    texts = {
        f"redis-{i}": f"stream {i}: " + " ".join(f"w{n}" for n in range(10)) for i in range(REDIS_STREAMS)
    }
    streams = {
        session: TimedStream(
            chat_url,
            tenant.key,
            {"model": "slow", "messages": [user(text)], "stream": True, "session_id": session},
        )
        for session, text in texts.items()
    }
    for stream in streams.values():
        stream.start()
    wait_for(list(streams.values()), count=4, events=3)
    # when Redis is killed (its data with it) and started again
    stack.backing.redis.stop()
    time.sleep(REDIS_DOWN_SECONDS)
    stack.backing.redis.start()
    back_at = time.monotonic()
    # then a new request is answered at once, by the same processes
    response = chat(stack, tenant, {"model": "echo", "messages": [user("back?")], "session_id": "redis-back"})
    answered_in = time.monotonic() - back_at
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == echo_answer("back?")
    # and every stream ends, with [DONE] or an error event, never silent for long
    join_by = time.monotonic() + LEASE_SECONDS + 30
    for stream in streams.values():
        stream.join(timeout=max(0.0, join_by - time.monotonic()))
    ended_at = time.monotonic()
    still_open = {
        session: (stream.events_seen(), round(ended_at - stream.lines[-1][0], 1) if stream.lines else None)
        for session, stream in streams.items()
        if stream.is_alive()
    }
    assert not still_open, f"open streams (events seen, seconds since their last line): {still_open}"
    endings = {"done": 0, "error": 0}
    for session, stream in streams.items():
        assert stream.status == 200
        assert stream.ended_cleanly, f"{session}: {stream.failure!r} {stream.lines[-5:]}"
        endings["done" if stream.last_event.data == "[DONE]" else "error"] += 1
    silences = {session: stream.longest_silence() for session, stream in streams.items()}
    # and every turn was answered once
    turn_ids = {session: first_turn(session).id for session in texts}
    final = wait_until_final(turn_ids.values(), timeout=LEASE_SECONDS + 30)
    assert {turn.status for turn in final.values()} == {"completed"}
    for session, text in texts.items():
        assert transcript(session) == [("user", text), ("assistant", echo_answer(text))]
    # and a client that follows a turn again after the last event it got gets the rest, each
    # stored event once: what it had and what it gets are the whole stored stream
    resumed = 0
    for session, stream in streams.items():
        whole = stored_stream(stack.api_url, tenant.key, turn_ids[session])
        assert (whole.content(), whole.done_count, whole.errors) == (echo_answer(texts[session]), 1, [])
        got, followed = followed_to_the_end(stream, stack.api_url, tenant.key, turn_ids[session])
        resumed += followed
        assert ids_and_data(got) == ids_and_data(whole.events), session
        # and so does a client that dropped halfway, whenever it got there
        halfway = len(whole.events) // 2
        rest = stored_stream(stack.api_url, tenant.key, turn_ids[session], whole.events[halfway].id)
        assert ids_and_data(rest.events) == ids_and_data(whole.events[halfway + 1 :]), session
    print(
        f"\nredis restarted ({REDIS_DOWN_SECONDS} s down) under {REDIS_STREAMS} streams: endings {endings}, "
        f"{resumed} followed again with Last-Event-ID (and each from halfway), longest silence "
        f"{max(silences.values()):.1f} s (bound {SILENCE_BOUND} s), all ended {ended_at - back_at:.1f} s "
        f"after Redis was back, a new request answered {answered_in:.2f} s after it"
    )
    assert max(silences.values()) <= SILENCE_BOUND, silences


def test_postgres_restarted_answers_503_meanwhile_and_every_turn_ends_once(fault_stack):
    stack, tenant = fault_stack, fault_stack.tenant
    api_url, key = stack.api_url, tenant.key
    texts = {
        f"pg-{i}": f"outage {i}: " + " ".join(f"w{n}" for n in range(10)) for i in range(POSTGRES_STREAMS)
    }
    # given turns being streamed, and a client waiting for a non-streaming answer
    streams = {
        session: TimedStream(
            f"{api_url}/chat/completions",
            key,
            {"model": "slow", "messages": [user(text)], "stream": True, "session_id": session},
        )
        for session, text in texts.items()
    }
    for stream in streams.values():
        stream.start()
    waiting_body = {"model": "slow", "messages": [user("wait for me")], "session_id": "pg-waiting"}
    waiting = BackgroundRequest("POST", f"{api_url}/chat/completions", key, json=waiting_body)
    waiting.start()
    # and a person who signed in for a token pair, and a browser with a session cookie
    person = signed_in_person(stack)
    browser = {"Cookie": "sessionid=fault-test-session"}
    wait_for(list(streams.values()), count=2, events=3)
    # when PostgreSQL stops (a fast shutdown cuts every connection)
    stack.backing.postgres.stop()
    stopped_at = time.monotonic()
    # then requests to any endpoint meanwhile are answered 503 database_unavailable, with Retry-After
    refused_body = {"model": "echo", "messages": [user("anyone?")], "session_id": "pg-refused"}

    def outage_requests() -> dict[str, BackgroundRequest]:
        requests = {
            "chat": BackgroundRequest("POST", f"{api_url}/chat/completions", key, json=refused_body),
            "chat stream": BackgroundRequest(
                "POST", f"{api_url}/chat/completions", key, json={**refused_body, "stream": True}
            ),
            "sessions": BackgroundRequest("GET", f"{api_url}/sessions", key),
            "turn events": BackgroundRequest("GET", f"{api_url}/turns/turn_x/events", key),
            "sign-in": BackgroundRequest(
                "POST", f"{api_url}/auth/token", None, json={"username": "u", "password": "p"}
            ),
            "token refresh": BackgroundRequest(
                "POST", f"{api_url}/auth/token/refresh", None, json={"refresh": person["refresh"]}
            ),
            "token verify": BackgroundRequest(
                "POST", f"{api_url}/auth/token/verify", None, json={"token": person["refresh"]}
            ),
            "browser's token": BackgroundRequest("POST", f"{api_url}/auth/oidc/token", None, headers=browser),
            "token page": BackgroundRequest("GET", f"{stack.url}/accounts/api-token/", None, headers=browser),
        }
        for request in requests.values():
            request.start()
        for request in requests.values():
            request.join(timeout=60)
        return requests

    # (the first ones wait for the pool to give up; once the outage is known, the rest are answered
    # at once, except the one request at a time that tries the database again)
    first_wave = outage_requests()
    second_wave = outage_requests()
    healthz = httpx.get(f"{stack.url}/healthz", timeout=10)
    waiting.join(timeout=60)
    # and PostgreSQL comes back
    stack.backing.postgres.start()
    back_at = time.monotonic()
    down_seconds = back_at - stopped_at
    for name, request in [*first_wave.items(), *second_wave.items()]:
        assert request.response is not None, name
        assert (request.response.status_code, request.response.json()) == (503, DATABASE_UNAVAILABLE), name
        assert request.response.headers["Retry-After"] == "5", name
    first_seconds = sorted(request.seconds for request in first_wave.values())
    second_seconds = sorted(request.seconds for request in second_wave.values())
    assert first_seconds[-1] <= FIRST_ANSWER_BOUND, first_seconds
    # (signing in and the token views, which reach the database from a view's own thread, follow
    # the same rule; one request at a time tries the database again)
    known_outage = sorted(request.seconds for request in second_wave.values())
    assert known_outage[-2] <= KNOWN_OUTAGE_ANSWER_BOUND, known_outage
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    # and the waiting client was told to come back (it does, below)
    assert (waiting.response.status_code, waiting.response.json()) == (503, DATABASE_UNAVAILABLE)
    # then the same processes serve again by themselves: requests go through within seconds
    attempts = 0
    while True:
        attempts += 1
        response = chat(
            stack, tenant, {"model": "echo", "messages": [user("back?")], "session_id": "pg-back"}
        )
        if response.status_code == 200:
            break
        assert (response.status_code, response.json()) == (503, DATABASE_UNAVAILABLE)
        assert time.monotonic() - back_at < 60, "the service did not come back in 60 s"
        time.sleep(0.2)
    resumed_after = time.monotonic() - back_at
    assert response.json()["choices"][0]["message"]["content"] == echo_answer("back?")
    # and the waiting client's retry (the OpenAI SDK's, with its retry header) gets its turn's answer
    retried = httpx.post(
        f"{api_url}/chat/completions",
        json=waiting_body,
        headers={"Authorization": f"Bearer {key}", "X-Stainless-Retry-Count": "1"},
        timeout=90,
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["choices"][0]["message"]["content"] == echo_answer("wait for me")
    # and every stream ends, with [DONE] or an error event the client can follow the turn again from
    for stream in streams.values():
        stream.join(timeout=LEASE_SECONDS + 60)
    endings: dict[str, int] = {}
    for session, stream in streams.items():
        assert not stream.is_alive(), f"{session}: still open, {stream.lines[-5:]}"
        assert stream.ended_cleanly, f"{session}: {stream.failure!r} {stream.lines[-5:]}"
        last = stream.last_event
        ending = "done" if last.data == "[DONE]" else last.json["error"]["code"]
        endings[ending] = endings.get(ending, 0) + 1
    # and recovery finished every turn the outage interrupted, once: nothing is left running
    turn_ids = {session: first_turn(session).id for session in [*texts, "pg-waiting"]}
    final = wait_until_final(turn_ids.values(), timeout=LEASE_SECONDS + 30)
    all_final_after = time.monotonic() - back_at
    assert {turn.status for turn in final.values()} == {"completed"}
    attempts_used = sorted(turn.attempts for turn in final.values())
    for session, text in [*texts.items(), ("pg-waiting", "wait for me")]:
        assert transcript(session) == [("user", text), ("assistant", echo_answer(text))]
    assert unfinished_turns() == []
    # and a stream cut by the outage, followed again from its last event, misses nothing
    resumed = 0
    for session, stream in streams.items():
        whole = stored_stream(api_url, key, turn_ids[session])
        assert (whole.content(), whole.done_count, whole.errors) == (echo_answer(texts[session]), 1, [])
        got, followed = followed_to_the_end(stream, api_url, key, turn_ids[session])
        resumed += followed
        assert ids_and_data(got) == ids_and_data(whole.events), session
    # and the refused requests stored nothing
    assert not session_exists("pg-refused")
    print(
        f"\npostgres down {down_seconds:.1f} s: the first {len(first_wave)} requests answered 503 in "
        f"{first_seconds[0]:.1f}-{first_seconds[-1]:.1f} s, the next {len(second_wave)} in "
        f"{', '.join(f'{seconds:.2f}' for seconds in second_seconds)} s; "
        f"served again {resumed_after:.1f} s after it came back ({attempts} tries); streams ended {endings}, "
        f"{resumed} resumed with Last-Event-ID; {len(final)} turns final {all_final_after:.1f} s after, "
        f"attempts {attempts_used}"
    )
