"""How a turn is claimed and finished through the database (sessions.runner.turn_execute, the
body of the Celery task): idempotent, in order, taken over after its lease, capped; how recovery
(sessions/recovery.py) deals with turns nobody runs; and how a runner's writes are fenced by its
attempt. These run the turn code in the test process.

The live stack, when a test of the run started it, runs its own recovery next to these tests on the
same database: a test here either reaches its state in one transaction (take_over) or asserts only
the end state, which is the same whichever process recovered the turn."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.backends.base import ChoiceDelta
from agents.models import Agent
from sessions.api.sse import follow_turn
from sessions.chunks import ReplyAccumulator, chunk_base, delta_chunk
from sessions.event_store import FLUSH_SECONDS, EventWriter
from sessions.events import CHUNK, DONE, USAGE, turn_event
from sessions.models import Message, Session, Turn, TurnEventBatch, UsageRecord
from sessions.recovery import turns_recover
from sessions.runner import (
    _turn_claim,
    _turn_finish,
    _turn_run,
    _turn_store_input,
    run_turn_job,
    turn_execute,
)
from sessions.submission import turn_cancel


def queued_turn(session: Session, position: int, text: str, agent: str = "echo") -> Turn:
    """A turn as turn_submit records it, never handed to an executor."""
    Session.objects.filter(pk=session.pk).update(turn_count=position)
    return Turn.objects.create(
        organization=session.organization,
        session=session,
        position=position,
        agent=Agent.objects.get(organization=session.organization, slug=agent),
        model=agent,
        input_messages=[{"role": "user", "content": text}],
        fingerprint=f"fp-{position}",
    )


def new_session(tenant, name: str) -> Session:
    return Session.objects.create(organization=tenant.organization, external_id=name)


def roles(session: Session) -> list[str]:
    return list(Message.objects.filter(session=session).order_by("seq").values_list("role", flat=True))


def contents(session: Session) -> list:
    return list(Message.objects.filter(session=session).order_by("seq").values_list("content", flat=True))


def wait_for_status(turn: Turn, status: str, timeout: float = 30) -> Turn:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = Turn.objects.get(pk=turn.pk)
        if current.status == status:
            return current
        time.sleep(0.05)
    raise AssertionError(f"turn {turn.id} is {Turn.objects.get(pk=turn.pk).status}, not {status}")


def lose_worker(turn: Turn) -> None:
    """What the database shows once a turn's worker died: its lease ran out, and it was handed to
    the executor long ago."""
    Turn.objects.filter(pk=turn.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        enqueued_at=timezone.now() - timedelta(hours=1),
    )


def take_over(turn_id: str) -> Turn:
    """A second worker's claim once the first one's lease ran out, in one transaction: no recovery
    running elsewhere can step in between."""
    with transaction.atomic():
        Turn.objects.filter(pk=turn_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        claimed = _turn_claim(turn_id)
    assert claimed is not None
    return claimed


def stored_events(turn: Turn) -> list[dict]:
    batches = TurnEventBatch.objects.filter(turn=turn).order_by("first_seq")
    return [event for batch in batches for event in json.loads(batch.events)]


def replay(turn: Turn, after_seq: int = 0) -> list[dict]:
    """What GET /v1/turns/{id}/events sends after `after_seq`, up to the end of the stream."""

    async def follow() -> list[dict]:
        return [event async for event in follow_turn(turn.id, after_seq=after_seq) if event is not None]

    return asyncio.run(asyncio.wait_for(follow(), timeout=30))


def text_of(events: list[dict]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if event["kind"] == CHUNK
        for choice in json.loads(event["data"])["choices"]
    )


def partial_answer(turn: Turn, *words: str) -> EventWriter:
    """The events a runner of `turn` (claimed) stored before it was lost: a role chunk and words."""
    writer = EventWriter(turn)
    base = chunk_base(turn, turn.session.external_id)
    deltas = [{"role": "assistant", "content": ""}] + [{"content": word} for word in words]
    for delta in deltas:
        writer.add(CHUNK, delta_chunk(base, ChoiceDelta(index=0, delta=delta), legacy_functions=False))
    writer.flush()
    return writer


def test_a_second_delivery_of_a_finished_turn_changes_nothing(tenant):
    session = new_session(tenant, "twice")
    turn = queued_turn(session, 1, "hi")
    turn_execute(turn_id=turn.id)
    before = Turn.objects.values().get(pk=turn.pk)
    # when the task is delivered again
    turn_execute(turn_id=turn.id)
    # then
    assert Turn.objects.values().get(pk=turn.pk) == before
    assert before["status"] == "completed"
    assert before["attempts"] == 1
    assert roles(session) == ["user", "assistant"]


def test_a_turn_waits_behind_an_earlier_unfinished_turn_and_is_started_after_it(tenant):
    session = new_session(tenant, "ordered")
    first = queued_turn(session, 1, "first")
    second = queued_turn(session, 2, "second")
    # when the later turn is delivered first, it is left queued
    turn_execute(turn_id=second.id)
    assert Turn.objects.get(pk=second.pk).status == "queued"
    assert roles(session) == []
    # when the earlier one runs, it finishes and starts the next one
    turn_execute(turn_id=first.id)
    deadline = time.monotonic() + 10
    while Turn.objects.get(pk=second.pk).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    contents = list(Message.objects.filter(session=session).order_by("seq").values_list("content", flat=True))
    assert contents[0::2] == ["first", "second"]
    assert contents[3].endswith("(3 messages in context)")


def test_a_turn_whose_lease_expired_is_taken_over_without_storing_its_input_twice(tenant):
    session = new_session(tenant, "lease")
    turn = queued_turn(session, 1, "are you there?")
    # given a worker that claimed the turn, stored its input and died
    Message.objects.create(session=session, seq=1, role="user", content="are you there?", turn=turn)
    Session.objects.filter(pk=session.pk).update(message_count=1)
    Turn.objects.filter(pk=turn.pk).update(
        status="running", attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    # when another delivery comes
    turn_execute(turn_id=turn.id)
    # then the turn is finished once, on its second attempt
    taken_over = Turn.objects.get(pk=turn.pk)
    assert (taken_over.status, taken_over.attempts) == ("completed", 2)
    assert roles(session) == ["user", "assistant"]


def test_a_running_turn_with_a_live_lease_is_left_alone(tenant):
    session = new_session(tenant, "live-lease")
    turn = queued_turn(session, 1, "busy")
    Turn.objects.filter(pk=turn.pk).update(
        status="running", attempts=1, lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    turn_execute(turn_id=turn.id)
    assert Turn.objects.get(pk=turn.pk).attempts == 1
    assert roles(session) == []


def test_recovery_fails_a_turn_lost_on_its_last_attempt_and_runs_the_sessions_next_turn(tenant):
    cap = settings.PARLEY_TURN_MAX_ATTEMPTS
    session = new_session(tenant, "capped")
    turn = queued_turn(session, 1, "again")
    after = queued_turn(session, 2, "next one")
    # given a turn whose worker was lost on its last attempt, after storing its input and an event
    claimed = _turn_claim(turn.id)
    _turn_store_input(claimed)
    Turn.objects.filter(pk=turn.pk).update(attempts=cap)
    TurnEventBatch.objects.create(
        turn=turn, first_seq=1, last_seq=1, events=json.dumps([turn_event(1, CHUNK, {})]), attempt=cap
    )
    lose_worker(turn)
    # when recovery runs, it is not claimed again: it fails
    turns_recover()
    failed = Turn.objects.get(pk=turn.pk)
    error = {
        "message": f"The turn was given up: the worker running it was lost on each of its {cap} attempts.",
        "type": "server_error",
        "param": None,
        "code": "turn_attempts_exhausted",
    }
    assert (failed.status, failed.attempts, failed.lease_expires_at) == ("failed", cap, None)
    assert failed.finished_at is not None
    assert failed.error == {"status": 500, "error": error}
    # with its terminal event after what was stored, and its usage record
    assert stored_events(failed) == [turn_event(1, CHUNK, {}), turn_event(2, "error", {"error": error})]
    record = UsageRecord.objects.get(turn=failed)
    assert (record.status, record.prompt_tokens, record.completion_tokens) == ("failed", 0, 0)
    # and the session's next turn runs
    wait_for_status(after, "completed")
    assert roles(session) == ["user", "user", "assistant"]
    assert contents(session)[1] == "next one"
    # and another pass changes nothing
    turns_recover()
    assert Turn.objects.values().get(pk=turn.pk) == Turn.objects.values().get(pk=failed.pk)
    assert UsageRecord.objects.filter(turn=failed).count() == 1
    assert len(stored_events(failed)) == 2


def test_recovery_runs_again_a_turn_whose_worker_was_lost_and_it_is_answered_once(tenant):
    session = new_session(tenant, "lost")
    turn = queued_turn(session, 1, "still there?")
    # given a worker that claimed the turn, stored its input and part of an answer, and died
    claimed = _turn_claim(turn.id)
    _turn_store_input(claimed)
    partial_answer(claimed, "You", " said")
    lose_worker(turn)
    # when recovery runs
    turns_recover()
    # then the turn is answered by its second attempt, its input stored once
    answered = wait_for_status(turn, "completed")
    assert answered.attempts == 2
    assert roles(session) == ["user", "assistant"]
    answer = "You said: still there?\n(1 message in context)"
    assert contents(session) == ["still there?", answer]
    # and its replay shows that answer once: the lost attempt's part is superseded
    events = replay(answered)
    assert text_of(events) == answer
    assert [event["kind"] for event in events][-2:] == ["usage", "done"]
    assert [event["seq"] for event in events] == list(range(5, 5 + len(events)))
    # while the stored stream keeps both, the new attempt's behind its restart marker at seq 4
    stored = stored_events(answered)
    assert stored[3]["kind"] == "restart"
    assert json.loads(stored[3]["data"])["error"]["code"] == "turn_restarted"
    assert stored[4:] == events
    # and a listener that had the lost attempt's first events gets the marker, then the answer
    assert replay(answered, after_seq=2) == [stored[3]]
    assert text_of(replay(answered, after_seq=4)) == answer


def test_a_runner_that_fails_leaves_its_turn_to_recovery(tenant):
    session = new_session(tenant, "crash")
    turn = queued_turn(session, 1, "crash and retry")
    # given a database that refuses the runner's last write (a usage record already names the turn)
    blocker = UsageRecord.objects.create(organization=tenant.organization, turn=turn, agent_slug="echo")
    # when the runner runs it, it fails: the task ends, the turn stays running, its lease ended
    run_turn_job(turn.id)
    crashed = Turn.objects.get(pk=turn.pk)
    assert (crashed.status, crashed.attempts) == ("running", 1)
    assert crashed.lease_expires_at <= timezone.now()
    assert roles(session) == ["user"]
    # when the database takes the write again and recovery runs
    blocker.delete()
    Turn.objects.filter(pk=turn.pk).update(enqueued_at=timezone.now() - timedelta(hours=1))
    turns_recover()
    # then the turn is answered, once
    answered = wait_for_status(turn, "completed")
    assert answered.attempts == 2
    assert contents(session) == ["crash and retry", "You said: crash and retry\n(1 message in context)"]
    assert UsageRecord.objects.filter(turn=turn).count() == 1


def test_a_stale_attempts_event_batch_is_dropped(tenant):
    session = new_session(tenant, "fenced")
    first = _turn_claim(queued_turn(session, 1, "hi").id)
    stale = partial_answer(first, "one")
    # when another worker takes the turn over while the first one still runs
    second = take_over(first.id)
    fresh = partial_answer(second, "two")
    stale.add(CHUNK, {"late": True})
    stale.flush()
    # then the first one's batch is refused, and it knows that it lost the turn
    assert (stale.superseded, fresh.superseded) == (True, False)
    batches = TurnEventBatch.objects.filter(turn=first).order_by("first_seq")
    assert list(batches.values_list("attempt", "first_seq", "last_seq")) == [(1, 1, 2), (2, 3, 4)]


def test_a_streams_first_event_is_written_at_once_and_the_quick_ones_after_it_together(tenant):
    # given the writer of a claimed turn that has written nothing yet
    session = new_session(tenant, "coalesced")
    turn = _turn_claim(queued_turn(session, 1, "hi").id)
    writer = EventWriter(turn)
    batches = TurnEventBatch.objects.filter(turn=turn).order_by("first_seq")
    # when one event comes, then two more right after it
    writer.add(CHUNK, {"n": 1})
    writer.flush_if_due()
    after_the_first = list(batches.values_list("first_seq", "last_seq"))
    writer.add(CHUNK, {"n": 2})
    writer.flush_if_due()
    writer.add(CHUNK, {"n": 3})
    writer.flush_if_due()
    after_the_quick_ones = list(batches.values_list("first_seq", "last_seq"))
    time.sleep(FLUSH_SECONDS)
    writer.flush_if_due()
    # then the first is written alone and at once, the next two together once the pause is over
    assert after_the_first == [(1, 1)]
    assert after_the_quick_ones == [(1, 1)]
    assert list(batches.values_list("first_seq", "last_seq")) == [(1, 1), (2, 3)]


def test_a_slow_runner_whose_turn_was_taken_over_stops_and_the_new_attempt_answers_once(tenant):
    Agent.objects.create(
        organization=tenant.organization,
        slug="slow",
        name="slow",
        backend_config={"chunk_delay_seconds": 0.1},
    )
    session = new_session(tenant, "slow-takeover")
    text = " ".join(f"word{i}" for i in range(20))
    turn = queued_turn(session, 1, text, agent="slow")
    # given a runner that is answering, slowly
    runner = threading.Thread(target=turn_execute, kwargs={"turn_id": turn.id})
    runner.start()
    deadline = time.monotonic() + 20
    while len(stored_events(turn)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    # when another worker takes the turn over (the first one's lease ran out while it stalled)
    second = take_over(turn.id)
    taken_at = max(event["seq"] for event in stored_events(turn))
    # then the first runner stops within a second or so, without writing another event
    runner.join(timeout=5)
    assert not runner.is_alive()
    assert max(event["seq"] for event in stored_events(turn)) == taken_at
    assert Turn.objects.get(pk=turn.pk).status == "running"
    # and the new attempt's answer is the one stored and replayed
    _turn_run(second)
    answered = Turn.objects.get(pk=turn.pk)
    answer = f"You said: {text}\n(1 message in context)"
    assert (answered.status, answered.attempts) == ("completed", 2)
    assert contents(session) == [text, answer]
    assert text_of(replay(answered)) == answer
    assert stored_events(answered)[taken_at]["kind"] == "restart"


def test_a_cancel_between_the_runners_last_look_and_its_finish_ends_the_turn_as_cancelled(tenant):
    session = new_session(tenant, "late-cancel")
    claimed = _turn_claim(queued_turn(session, 1, "hi").id)
    _turn_store_input(claimed)
    # given a runner that has the whole answer and is about to store it
    reply = ReplyAccumulator()
    reply.add(ChoiceDelta(index=0, delta={"role": "assistant", "content": "all of it"}, finish_reason="stop"))
    writer = EventWriter(claimed)
    writer.add(CHUNK, {"choices": []})
    writer.add(USAGE, {"choices": [], "usage": {}})
    writer.add(DONE)
    # when the cancel lands just before it does
    turn_cancel(turn=claimed)
    _turn_finish(
        claimed,
        writer,
        status="completed",
        stored=[{"role": "assistant", "content": "all of it"}],
        reply=reply,
    )
    # then the turn ends as cancelled, with what it produced and a terminal event
    turn = Turn.objects.get(pk=claimed.pk)
    assert (turn.status, turn.finished_at is not None) == ("cancelled", True)
    events = stored_events(turn)
    assert [event["kind"] for event in events] == ["chunk", "error"]
    assert json.loads(events[-1]["data"])["error"]["code"] == "turn_cancelled"
    assert roles(session) == ["user", "assistant"]
    assert UsageRecord.objects.get(turn=turn).status == "cancelled"
