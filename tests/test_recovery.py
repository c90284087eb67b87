"""Turn recovery with the live stack (sessions/recovery.py, run by celery beat in production and by
a thread of the web process in the embedded mode): a turn that nobody runs is run, a taken-over
turn shows each answer once, and, in production, a killed worker or a broker that is down at
submit time loses nothing. The turns of the first tests are set up in this process as a lost
worker leaves them; the stack's own recovery finds them."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from agents.models import Agent
from config.celery import app as celery_app
from sessions.events import CHUNK
from sessions.models import Session, Turn, TurnEventBatch
from sessions.runner import _turn_claim, _turn_store_input
from sessions.tasks import recover_turns
from tests.live import RECOVERY_SECONDS, REQUEUE_SECONDS, api, start_web, start_worker, stop, wait_until
from tests.sse import SseListener, get_stream, post_stream
from tests.test_turn_claims import (
    contents,
    lose_worker,
    new_session,
    partial_answer,
    queued_turn,
    roles,
    wait_for_status,
)

# Recovery hands a lost turn over within this: its interval, the requeue delay, and room for load.
RECOVERY_BOUND = RECOVERY_SECONDS + REQUEUE_SECONDS + 20


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def restart_marker(turn_id: str, seq: int) -> dict[str, Any]:
    return {
        "error": {
            "message": f"The worker answering turn {turn_id} was lost and the turn started over. Follow "
            f"GET /v1/turns/{turn_id}/events again with Last-Event-ID: {seq} for the new answer.",
            "type": "server_error",
            "param": None,
            "code": "turn_restarted",
        }
    }


def test_beat_sends_turn_recovery_every_interval():
    entry = next(e for e in celery_app.conf.beat_schedule.values() if e["task"] == "parley.recover_turns")
    assert entry == {"task": "parley.recover_turns", "schedule": 10.0, "options": {"expires": 10.0}}
    assert celery_app.tasks["parley.recover_turns"].run == recover_turns.run


def test_a_queued_turn_never_handed_to_the_executor_is_run_by_recovery(stack, tenant):
    # given a turn recorded while its executor could not take it (lost message, restart, broker down)
    session = new_session(tenant, "orphan")
    turn = queued_turn(session, 1, "anyone?")
    started = time.monotonic()
    # then the stack's recovery runs it
    answered = wait_for_status(turn, "completed", timeout=RECOVERY_BOUND)
    print(f"\n{stack.mode}: a never-enqueued turn ran after {time.monotonic() - started:.1f} s")
    assert answered.attempts == 1
    assert contents(session) == ["anyone?", "You said: anyone?\n(1 message in context)"]
    # and the session goes on
    response = api(
        stack,
        tenant,
        "POST",
        "/chat/completions",
        json={"model": "echo", "messages": [user("and now?")], "session_id": "orphan"},
    )
    assert response.status_code == 200
    answer = 'You said: and now?\nEarlier you said: "anyone?"\n(3 messages in context)'
    assert response.json()["choices"][0]["message"]["content"] == answer
    assert roles(session) == ["user", "assistant", "user", "assistant"]


def test_a_takeover_shows_one_answer_and_tells_a_listener_of_the_lost_attempt_to_follow_again(stack, tenant):
    session = new_session(tenant, "takeover")
    turn = queued_turn(session, 1, "tell me once")
    # given a worker that stored the turn's input and the start of an answer (events 1-3)
    claimed = _turn_claim(turn.id)
    _turn_store_input(claimed)
    lost_runner = partial_answer(claimed, "You", " said")
    # and a client that follows the turn and got them
    events_url = f"{stack.api_url}/turns/{turn.id}/events?include_usage=true"
    listener = SseListener(events_url, tenant.key)
    listener.start()
    listener.wait_for_events(3)
    # when the worker is lost, the stack's recovery hands the turn to another
    lose_worker(turn)
    listener.join(timeout=RECOVERY_BOUND)
    assert not listener.is_alive()
    answered = wait_for_status(turn, "completed")
    assert answered.attempts == 2
    # then the client got the restart marker, as the last event of its stream
    marker = restart_marker(turn.id, 4)
    assert listener.status == 200
    assert [event.id for event in listener.read.events] == ["1", "2", "3", "4"]
    assert listener.read.content() == "You said"
    assert listener.read.events[-1].json == marker
    # and following the turn again from the marker, it gets the new answer whole
    answer = "You said: tell me once\n(1 message in context)"
    response, resumed = get_stream(events_url, tenant.key, last_event_id="4")
    assert response.status_code == 200
    assert (resumed.content(), resumed.done_count, resumed.errors) == (answer, 1, [])
    assert [int(event.id) for event in resumed.events] == list(range(5, 5 + len(resumed.events)))
    # and a replay from the start shows exactly that: one answer
    _, replay = get_stream(events_url, tenant.key)
    assert [(event.id, event.data) for event in replay.events] == [
        (event.id, event.data) for event in resumed.events
    ]
    # and a client that had only the lost attempt's first event is told to follow again too
    _, behind = get_stream(events_url, tenant.key, last_event_id="1")
    assert [(event.id, event.json) for event in behind.events] == [("4", marker)]
    # and what is stored is what the stream shows: the input once, the new answer
    assert contents(session) == ["tell me once", answer]
    # and the lost worker, were it still alive, could not write to the turn's stream any more
    lost_runner.add(CHUNK, {"late": True})
    lost_runner.flush()
    assert lost_runner.superseded
    attempts = (
        TurnEventBatch.objects.filter(turn=turn).order_by("first_seq").values_list("attempt", flat=True)
    )
    assert attempts[0] == 1
    assert set(attempts[1:]) == {2}


def test_the_embedded_web_process_runs_the_periodic_work_idle_sessions_included(stack, tenant):
    if stack.mode != "embedded":
        pytest.skip("production: celery beat sends the periodic work (tests/test_automation.py)")
    # given a session idle for longer than the organization's TTL
    assert api(stack, tenant, "PUT", "/settings/automation", json={"session_idle_ttl": 60}).status_code == 200
    body = {"model": "echo", "messages": [user("hi")], "session_id": "forgotten"}
    assert api(stack, tenant, "POST", "/chat/completions", json=body).status_code == 200
    sessions = Session.objects.filter(organization=tenant.organization, external_id="forgotten")
    sessions.update(updated=timezone.now() - timedelta(seconds=120))
    # when an embedded web process runs, sweeping every second
    log_dir = Path(tempfile.mkdtemp(prefix="parley-sweep-"))
    _, web, log = start_web({**stack.env, "PARLEY_IDLE_SWEEP_SECONDS": "1"}, log_dir, name="sweeping-web")
    try:
        # then it deletes the session by itself
        wait_until(
            lambda: not sessions.exists(), timeout=30, what="the in-process sweep", process=web, log=log
        )
    finally:
        stop([web])


# --- Faults, production mode ---------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its closing parenthesis
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return children


class StreamInBackground(threading.Thread):
    """POST a streaming chat request on a thread of its own."""

    def __init__(self, url: str, key: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.body = url, key, body
        self.response = self.read = None

    def run(self) -> None:
        self.response, self.read = post_stream(self.url, self.key, self.body)


@pytest.mark.production_only
def test_a_worker_child_killed_mid_answer_loses_nothing_and_the_session_goes_on(stack, tenant):
    Agent.objects.create(
        organization=tenant.organization,
        slug="slow",
        name="slow",
        backend_config={"chunk_delay_seconds": 0.3},
    )
    # given a worker of its own (one child), its web process, and a short lease for the turns it claims
    lease = 6
    env = {
        **stack.env,
        "PARLEY_CELERY_QUEUE": f"{stack.env['PARLEY_CELERY_QUEUE']}-kill",
        "PARLEY_TURN_LEASE_SECONDS": str(lease),
    }
    log_dir = Path(tempfile.mkdtemp(prefix="parley-kill-"))
    worker, _ = start_worker(env, log_dir, name="kill-worker", concurrency=1)
    processes = [worker]
    try:
        url, web, _ = start_web(env, log_dir, name="kill-web")
        processes.append(web)
        chat_url = f"{url}/v1/chat/completions"
        text = " ".join(f"w{i}" for i in range(16))
        first = StreamInBackground(
            chat_url,
            tenant.key,
            {"model": "slow", "messages": [user(text)], "stream": True, "session_id": "killed"},
        )
        first.start()
        # and a turn that the worker's child is answering
        deadline = time.monotonic() + 30
        turn = None
        while time.monotonic() < deadline:
            turn = Turn.objects.filter(
                organization=tenant.organization, session__external_id="killed"
            ).first()
            if turn is not None and TurnEventBatch.objects.filter(turn=turn).count() >= 3:
                break
            time.sleep(0.05)
        assert turn is not None
        assert Turn.objects.get(pk=turn.pk).status == "running"
        # when the child is killed
        (child,) = children_of(worker.pid)
        os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        # and the client sends the session's next request meanwhile
        second = StreamInBackground(
            chat_url,
            tenant.key,
            {"model": "echo", "messages": [user("and then?")], "stream": True, "session_id": "killed"},
        )
        second.start()
        # then recovery runs the turn again, within the lease and half a minute
        answered = wait_for_status(turn, "completed", timeout=lease + 30)
        print(f"\nkilled worker child: turn answered {time.monotonic() - killed_at:.1f} s after the kill")
        assert answered.attempts == 2
        first.join(timeout=30)
        second.join(timeout=30)
        assert worker.poll() is None  # the worker replaced its child
    finally:
        stop(processes)
    answer = f"You said: {text}\n(1 message in context)"
    next_answer = f'You said: and then?\nEarlier you said: "{text}"\n(3 messages in context)'
    # and the client that saw the lost attempt's start was told to follow the turn again
    assert first.response.status_code == 200
    marker_event = first.read.events[-1]
    assert marker_event.json == restart_marker(turn.id, int(marker_event.id))
    assert answer.startswith(first.read.content())
    # which gives it the new answer whole
    _, resumed = get_stream(
        f"{stack.api_url}/turns/{turn.id}/events", tenant.key, last_event_id=marker_event.id
    )
    assert (resumed.content(), resumed.done_count) == (answer, 1)
    # and the session's next turn ran after it, seeing it
    assert second.response.status_code == 200
    assert (second.read.content(), second.read.done_count) == (next_answer, 1)
    # and nothing was lost or stored twice
    session = Session.objects.get(organization=tenant.organization, external_id="killed")
    assert contents(session) == [text, answer, "and then?", next_answer]


@pytest.mark.production_only
def test_a_request_made_while_the_broker_is_down_is_answered_once_recovery_hands_its_turn_over(stack, tenant):
    # given a web process whose broker refuses connections (a port bound and never listened on)
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        broker = f"redis://127.0.0.1:{closed_port.getsockname()[1]}/0"
        log_dir = Path(tempfile.mkdtemp(prefix="parley-no-broker-"))
        url, web, log = start_web({**stack.env, "CELERY_BROKER_URL": broker}, log_dir, name="no-broker-web")
        try:
            # when a client asks it for an answer
            started = time.monotonic()
            response, read = post_stream(
                f"{url}/v1/chat/completions",
                tenant.key,
                {
                    "model": "echo",
                    "messages": [user("are you up?")],
                    "stream": True,
                    "session_id": "no-broker",
                },
            )
            elapsed = time.monotonic() - started
        finally:
            stop([web])
    print(f"\nbroker down at submit: answered after {elapsed:.1f} s")
    # then the turn, left queued, is run by recovery (the rest of the stack has its broker)
    assert response.status_code == 200
    assert (read.content(), read.done_count, read.errors) == (
        "You said: are you up?\n(1 message in context)",
        1,
        [],
    )
    turn = Turn.objects.get(pk=response.headers["X-Turn-Id"])
    assert (turn.status, turn.attempts) == ("completed", 1)
    session = Session.objects.get(organization=tenant.organization, external_id="no-broker")
    assert roles(session) == ["user", "assistant"]
    assert f"Turn {turn.id} stays queued" in log.read_text()
    assert elapsed >= REQUEUE_SECONDS - 1  # handed over by recovery, not by the request
