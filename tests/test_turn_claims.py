"""How a turn is claimed and finished through the database (sessions.turns.turn_execute, the
body of the Celery task): idempotent, in order, taken over after its lease, capped."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from agents.models import Agent
from sessions.models import Message, Session, Turn
from sessions.turns import turn_execute


def queued_turn(session: Session, position: int, text: str) -> Turn:
    agent = Agent.objects.get(organization=session.organization, slug="echo")
    Session.objects.filter(pk=session.pk).update(turn_count=position)
    return Turn.objects.create(
        organization=session.organization,
        session=session,
        position=position,
        agent=agent,
        model="echo",
        input_messages=[{"role": "user", "content": text}],
        fingerprint=f"fp-{position}",
    )


def new_session(tenant, name: str) -> Session:
    return Session.objects.create(organization=tenant.organization, external_id=name)


def roles(session: Session) -> list[str]:
    return list(Message.objects.filter(session=session).order_by("seq").values_list("role", flat=True))


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


def test_no_attempt_beyond_the_cap(tenant):
    session = new_session(tenant, "capped")
    turn = queued_turn(session, 1, "again")
    Turn.objects.filter(pk=turn.pk).update(
        status="running",
        attempts=settings.PARLEY_TURN_MAX_ATTEMPTS,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    turn_execute(turn_id=turn.id)
    assert Turn.objects.get(pk=turn.pk).attempts == settings.PARLEY_TURN_MAX_ATTEMPTS
    assert roles(session) == []


def test_a_cancel_between_the_runners_last_look_and_its_finish_ends_the_turn_as_cancelled(tenant):
    from agents.backends.base import ChoiceDelta
    from sessions.events import CHUNK, DONE, USAGE
    from sessions.models import TurnEventBatch, UsageRecord
    from sessions.streaming import EventWriter, ReplyAccumulator
    from sessions.turns import _turn_claim, _turn_finish, _turn_store_input, turn_cancel

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
    events = [event for batch in TurnEventBatch.objects.filter(turn=turn) for event in batch.events]
    assert [event["kind"] for event in events] == ["chunk", "error"]
    assert events[-1]["data"]["error"]["code"] == "turn_cancelled"
    assert roles(session) == ["user", "assistant"]
    assert UsageRecord.objects.get(turn=turn).status == "cancelled"
