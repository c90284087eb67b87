"""The database round trips of one chat turn, in the test process: authenticating the key,
submitting the request (sessions.submission.turn_submit) and running the turn
(sessions.runner.turn_execute, the body of the worker's task). Their number is the same on a
session of 10 messages and on one of 1,000: a turn reads the transcript's window, not the
transcript."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from accounts.authentication import authenticate_bearer
from agents.models import Agent
from sessions.history import history_window
from sessions.models import Message, Session, Turn
from sessions.runner import turn_execute
from sessions.selectors import session_history
from sessions.submission import TurnRequest, turn_submit
from tests.live import api

# What a turn of the echo agent on an existing session costs (printed with -s), on SQLite and
# PostgreSQL alike; counted with the transactions' BEGIN, COMMIT and savepoint statements. The
# execution's count includes the stream's first event, written alone at once (it reaches the client
# without waiting for the coalescing pause), and the rest of the answer in one more fenced write.
MAX_SUBMISSION_QUERIES = 7
MAX_EXECUTION_QUERIES = 24


def session_of(tenant, length: int) -> Session:
    """A session whose transcript holds `length` messages, user and assistant in turn."""
    session = Session.objects.create(
        organization=tenant.organization, external_id=f"long-{uuid.uuid4().hex[:8]}", message_count=length
    )
    Message.objects.bulk_create(
        Message(
            session=session,
            seq=seq,
            role="user" if seq % 2 else "assistant",
            content=f"message {seq}",
        )
        for seq in range(1, length + 1)
    )
    return session


def one_turn(tenant, session: Session, text: str) -> tuple[dict[str, int], list[tuple]]:
    """Queries of each phase of one turn, which must complete, and the last two messages it leaves.
    The turn runs here, in this thread where its queries are counted, inside a transaction that is
    rolled back at the end: the hand-over to the executor waits for a commit (on commit, as
    always), so no executor runs it, and each turn starts from the same transcript."""
    request = RequestFactory().post("/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {tenant.key}")
    counts = {}
    with CaptureQueriesContext(connection) as queries:
        principal = authenticate_bearer(request)
    counts["authentication"] = len(queries)
    with transaction.atomic():
        with CaptureQueriesContext(connection) as queries:
            turn = turn_submit(
                organization=principal.organization,
                api_key=principal.api_key,
                request=TurnRequest(
                    agent_slug="echo",
                    session_id=session.external_id,
                    messages=[{"role": "user", "content": text}],
                    params={},
                ),
            )
        counts["submission"] = len(queries)
        with CaptureQueriesContext(connection) as queries:
            turn_execute(turn_id=turn.id)
        counts["execution"] = len(queries)
        turn.refresh_from_db()
        assert turn.status == Turn.Status.COMPLETED
        last = list(
            Message.objects.filter(session=session).order_by("-seq").values_list("seq", "role", "content")[:2]
        )
        transaction.set_rollback(True)
    return counts, last


def test_queries_per_turn_do_not_grow_with_the_session(stack, tenant):
    # (`stack`: so that the production pass runs it too, on PostgreSQL)
    # given an agent that sees the last 20 messages, and sessions of 10 and of 1,000 messages,
    # each with a turn run on it before (warm caches alike)
    Agent.objects.filter(organization=tenant.organization, slug="echo").update(history_max_messages=20)
    short, long = session_of(tenant, 10), session_of(tenant, 1000)
    one_turn(tenant, short, "warm up")
    one_turn(tenant, long, "warm up")
    # when a turn runs on each
    on_short, _ = one_turn(tenant, short, "hello short")
    on_long, last_on_long = one_turn(tenant, long, "hello long")
    print(f"queries per turn: 10 messages {on_short}, 1,000 messages {on_long}")
    # then both take the same queries, within the bounds
    assert on_long == on_short
    assert on_short["authentication"] == 1
    assert on_short["submission"] <= MAX_SUBMISSION_QUERIES
    assert on_short["execution"] <= MAX_EXECUTION_QUERIES
    # and the turn stored its question and its answer at the end of the transcript
    assert last_on_long == [
        (
            1002,
            "assistant",
            'You said: hello long\nEarlier you said: "message 991" | "message 993" | "message 995" | '
            '"message 997" | "message 999"\n(20 messages in context)',
        ),
        (1001, "user", "hello long"),
    ]


def test_a_turn_on_a_new_session_reads_no_message_back(stack, tenant):
    # given a request of several messages that starts a session
    messages = [{"role": "user", "content": f"message {index}"} for index in range(5)]
    request = TurnRequest(
        agent_slug="echo", session_id=f"new-{uuid.uuid4().hex[:8]}", messages=messages, params={}
    )
    principal = authenticate_bearer(
        RequestFactory().post("/v1/chat/completions", HTTP_AUTHORIZATION=f"Bearer {tenant.key}")
    )
    with transaction.atomic():
        turn = turn_submit(organization=principal.organization, api_key=principal.api_key, request=request)
        # when its turn runs
        with CaptureQueriesContext(connection) as queries:
            turn_execute(turn_id=turn.id)
        turn.refresh_from_db()
        stored = list(Message.objects.filter(turn=turn).order_by("seq").values_list("role", "content"))
        transaction.set_rollback(True)
    # then the agent saw the five messages, which were stored, and none was read back to see them
    assert turn.status == Turn.Status.COMPLETED
    assert turn.output["choices"][0]["message"]["content"].endswith("(5 messages in context)")
    assert stored == [("user", f"message {index}") for index in range(5)] + [
        ("assistant", turn.output["choices"][0]["message"]["content"])
    ]
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in reads if 'FROM "conversations_message"' in sql], reads


@pytest.mark.parametrize(
    ("max_messages", "max_tokens"),
    [(None, None), (0, None), (3, None), (50, None), (None, 1), (None, 30), (4, 25)],
)
def test_the_window_read_from_the_database_is_the_window_of_the_whole_transcript(
    tenant, max_messages, max_tokens
):
    # given a transcript with leading instructions, and an instruction and tool results later on
    roles = ["system", "developer", "user", "assistant", "system", "user", "assistant", "tool", "tool"]
    roles += ["user", "assistant"] * 5
    session = Session.objects.create(
        organization=tenant.organization,
        external_id=f"window-{uuid.uuid4().hex[:8]}",
        message_count=len(roles),
    )
    Message.objects.bulk_create(
        Message(session=session, seq=seq, role=role, content=f"{role} message number {seq}")
        for seq, role in enumerate(roles, start=1)
    )
    whole = [message.as_openai() for message in Message.objects.filter(session=session).order_by("seq")]
    # when the window is read in SQL, then it is the window of the whole transcript
    assert session_history(session=session, max_messages=max_messages, max_tokens=max_tokens) == (
        history_window(whole, max_messages=max_messages, max_tokens=max_tokens)
    )


def database_backends() -> set[int]:
    """The server processes connected to the test database now (one per open connection)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return {pid for (pid,) in cursor.fetchall()}


@pytest.mark.production_only
def test_the_worker_keeps_its_database_connections_from_turn_to_turn(stack, tenant):
    # given a few turns run, so that every process has the connections it keeps
    session_id = f"pooled-{uuid.uuid4().hex[:8]}"
    for index in range(3):
        assert (
            api(
                stack, tenant, "POST", "/chat/completions", json=echo(session_id, f"warm {index}")
            ).status_code
            == 200
        )
    before = database_backends()
    # when twenty more turns run, one after the other
    seen = set(before)
    for index in range(20):
        response = api(stack, tenant, "POST", "/chat/completions", json=echo(session_id, f"turn {index}"))
        assert response.status_code == 200, response.text
        seen |= database_backends()
    # then they ran on the connections there were, but for each worker child's first (a connection
    # a turn, closed after it, would leave a new server process behind each time)
    assert len(seen - before) <= 2, f"{len(seen - before)} new connections for 20 turns"


def echo(session_id: str, text: str) -> dict:
    return {"model": "echo", "session_id": session_id, "messages": [{"role": "user", "content": text}]}
