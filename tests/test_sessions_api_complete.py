"""The whole Sessions API: list filters with pagination, create, update, export, fork, the
`session_reset` flag and the session id synonyms, each with a cross-tenant test."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agents.models import Agent
from sessions.models import Message, Session, Turn
from tests.conftest import Tenant
from tests.live import Stack, api


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def chat(stack: Stack, tenant: Tenant, text: str = "hi", **fields: Any) -> httpx.Response:
    body = {"model": "echo", "messages": [user(text)], **fields}
    return api(stack, tenant, "POST", "/chat/completions", json=body)


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def transcript(tenant: Tenant, session_id: str) -> list[tuple[int, str, Any]]:
    return list(
        Message.objects.filter(session__organization=tenant.organization, session__external_id=session_id)
        .order_by("seq")
        .values_list("seq", "role", "content")
    )


def listed(stack: Stack, tenant: Tenant, **params: Any) -> list[str]:
    response = api(stack, tenant, "GET", "/sessions", params=params)
    assert response.status_code == 200, response.text
    return [session["id"] for session in response.json()["data"]]


def snapshot(tenant: Tenant) -> list[tuple]:
    """Everything of the tenant's sessions that a refused request must leave as it was."""
    sessions = Session.objects.filter(organization=tenant.organization).order_by("external_id")
    return [
        (
            session.external_id,
            session.title,
            session.metadata,
            session.agent_id,
            session.end_user,
            session.message_count,
            list(session.messages.order_by("seq").values_list("seq", "role", "content")),
        )
        for session in sessions
    ]


def session_not_found(session_id: str) -> dict[str, Any]:
    return {
        "error": {
            "message": f"No session found with id '{session_id}'.",
            "type": "invalid_request_error",
            "param": "session_id",
            "code": "session_not_found",
        }
    }


def create(stack: Stack, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = api(stack, tenant, "POST", "/sessions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# --- the end user ----------------------------------------------------------------------------------


def test_the_requests_user_is_stored_as_the_sessions_end_user(stack, tenant):
    # given a first request from end user alice
    answer(chat(stack, tenant, "hi", session_id="eu-1", user="alice"))
    assert api(stack, tenant, "GET", "/sessions/eu-1").json()["user"] == "alice"
    # when a later request leaves the user out, the session keeps it
    answer(chat(stack, tenant, "again", session_id="eu-1"))
    assert Session.objects.get(organization=tenant.organization, external_id="eu-1").end_user == "alice"
    # and a request from another user replaces it
    answer(chat(stack, tenant, "me now", session_id="eu-1", user="bob"))
    assert Session.objects.get(organization=tenant.organization, external_id="eu-1").end_user == "bob"


# --- list filters ----------------------------------------------------------------------------------


def test_list_filters_by_agent(stack, tenant):
    Agent.objects.create(organization=tenant.organization, slug="support", name="Support")
    answer(chat(stack, tenant, session_id="by-echo"))
    answer(chat(stack, tenant, model="support", session_id="by-support"))
    assert listed(stack, tenant, agent="support") == ["by-support"]
    assert listed(stack, tenant, agent="echo") == ["by-echo"]
    assert listed(stack, tenant, agent="nobody") == []


def test_list_filters_by_end_user(stack, tenant):
    answer(chat(stack, tenant, session_id="u-alice-1", user="alice"))
    answer(chat(stack, tenant, session_id="u-bob", user="bob"))
    answer(chat(stack, tenant, session_id="u-alice-2", user="alice"))
    answer(chat(stack, tenant, session_id="u-nobody"))
    assert listed(stack, tenant, user="alice") == ["u-alice-2", "u-alice-1"]
    assert listed(stack, tenant, user="bob") == ["u-bob"]


def test_list_filters_by_metadata_keys(stack, tenant):
    create(stack, tenant, id="m-red-eu", metadata={"team": "red", "region": "eu"})
    create(stack, tenant, id="m-red-us", metadata={"team": "red", "region": "us"})
    create(stack, tenant, id="m-blue", metadata={"team": "blue"})
    create(stack, tenant, id="m-none")
    create(stack, tenant, id="m-odd-key", metadata={"a__b": "1", "with space": "yes"})
    assert listed(stack, tenant, **{"metadata[team]": "red"}) == ["m-red-us", "m-red-eu"]
    assert listed(stack, tenant, **{"metadata[team]": "red", "metadata[region]": "eu"}) == ["m-red-eu"]
    assert listed(stack, tenant, **{"metadata[team]": "green"}) == []
    assert listed(stack, tenant, **{"metadata[a__b]": "1"}) == ["m-odd-key"]
    assert listed(stack, tenant, **{"metadata[with space]": "yes"}) == ["m-odd-key"]


def set_created(tenant: Tenant, session_id: str, moment: datetime) -> None:
    Session.objects.filter(organization=tenant.organization, external_id=session_id).update(created=moment)


def test_list_filters_by_created_range_in_unix_seconds_or_iso_8601(stack, tenant):
    days = {"jan": datetime(2025, 1, 15, tzinfo=UTC), "feb": datetime(2025, 2, 15, tzinfo=UTC)}
    days["mar"] = datetime(2025, 3, 15, tzinfo=UTC)
    for name, moment in days.items():
        create(stack, tenant, id=f"c-{name}")
        set_created(tenant, f"c-{name}", moment)
    feb_1 = int(datetime(2025, 2, 1, tzinfo=UTC).timestamp())
    assert listed(stack, tenant, created_after=feb_1) == ["c-mar", "c-feb"]
    assert listed(stack, tenant, created_before=feb_1) == ["c-jan"]
    assert listed(stack, tenant, created_after="2025-02-01T00:00:00Z", created_before="2025-03-01") == [
        "c-feb"
    ]
    assert listed(stack, tenant, created_after="2025-02-15T01:00:00+02:00") == ["c-mar", "c-feb"]
    assert listed(stack, tenant, created_after=f"{feb_1}.5", created_before="2025-02-15T00:00:01") == [
        "c-feb"
    ]


def test_pagination_keeps_the_filters(stack, tenant):
    # given seven sessions of which five are the team's, interleaved
    for index in range(7):
        create(stack, tenant, id=f"p-{index}", metadata={"team": "red" if index % 3 else "blue"})
    red = ["p-5", "p-4", "p-2", "p-1"]
    # when the client pages through the red ones two at a time
    first = api(stack, tenant, "GET", "/sessions", params={"metadata[team]": "red", "limit": 2}).json()
    second = api(
        stack,
        tenant,
        "GET",
        "/sessions",
        params={"metadata[team]": "red", "limit": 2, "after": first["last_id"]},
    ).json()
    # then
    assert [s["id"] for s in first["data"]] == red[:2]
    assert first["has_more"] is True
    assert [s["id"] for s in second["data"]] == red[2:]
    assert second["has_more"] is False
    assert (second["first_id"], second["last_id"]) == ("p-2", "p-1")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "-5"}, "created_after"),
        ({"created_before": "2025-13-01"}, "created_before"),
        ({"created_before": "99999999999999999"}, "created_before"),
        ({"agent": ""}, "agent"),
        ({"user": ""}, "user"),
        ({"metadata[]": "x"}, "metadata[]"),
        ({"metadata[" + "k" * 65 + "]": "x"}, "metadata[" + "k" * 65 + "]"),
        ({"limit": "0", "agent": "echo"}, "limit"),
        ({"after": "nope", "agent": "echo"}, "after"),
    ],
)
def test_bad_filter_values_are_refused_naming_the_parameter(stack, tenant, params, param):
    response = api(stack, tenant, "GET", "/sessions", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_filters_never_reach_another_organizations_sessions(stack, tenant, other_tenant):
    # given the other organization's session, which matches every filter
    answer(chat(stack, other_tenant, session_id="theirs", user="alice"))
    api(stack, other_tenant, "PATCH", "/sessions/theirs", json={"metadata": {"team": "red"}})
    # when this tenant lists with those filters
    found = listed(stack, tenant, agent="echo", user="alice", **{"metadata[team]": "red"}, created_after=0)
    # then
    assert found == []


# --- create ------------------------------------------------------------------------------------------


def test_create_an_empty_session_with_id_title_metadata_and_agent(stack, tenant):
    Agent.objects.create(organization=tenant.organization, slug="support", name="Support")
    body = create(stack, tenant, id="new-1", title="Billing", metadata={"team": "red"}, agent="support")
    assert body == {
        "id": "new-1",
        "object": "session",
        "agent": "support",
        "title": "Billing",
        "metadata": {"team": "red"},
        "user": None,
        "message_count": 0,
        "created": body["created"],
        "updated": body["updated"],
        "messages": [],
    }
    assert abs(body["created"] - time.time()) < 60
    # and a chat continues it from the first message
    assert answer(chat(stack, tenant, "hello", model="support", session_id="new-1")) == (
        "You said: hello\n(1 message in context)"
    )
    assert [row[0] for row in transcript(tenant, "new-1")] == [1, 2]


def test_create_without_an_id_generates_one_and_the_first_chat_sets_the_agent(stack, tenant):
    body = create(stack, tenant)
    assert body["id"].startswith("sess_")
    assert body["agent"] is None
    answer(chat(stack, tenant, session_id=body["id"]))
    assert api(stack, tenant, "GET", f"/sessions/{body['id']}").json()["agent"] == "echo"


def test_create_with_an_id_in_use_is_a_conflict(stack, tenant):
    answer(chat(stack, tenant, "keep me", session_id="taken"))
    before = snapshot(tenant)
    response = api(stack, tenant, "POST", "/sessions", json={"id": "taken", "title": "Other"})
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "message": "A session with id 'taken' already exists.",
            "type": "invalid_request_error",
            "param": "id",
            "code": "session_exists",
        }
    }
    assert snapshot(tenant) == before


def test_create_with_another_organizations_session_id_makes_a_separate_session(stack, tenant, other_tenant):
    answer(chat(stack, other_tenant, "canary-51", session_id="shared"))
    theirs = snapshot(other_tenant)
    body = create(stack, tenant, id="shared", title="Mine")
    assert (body["id"], body["message_count"], body["messages"]) == ("shared", 0, [])
    assert snapshot(other_tenant) == theirs


def test_create_with_another_organizations_agent_is_refused_like_a_missing_one(stack, tenant, other_tenant):
    Agent.objects.create(organization=other_tenant.organization, slug="theirs", name="Theirs")
    foreign = api(stack, tenant, "POST", "/sessions", json={"agent": "theirs"})
    missing = api(stack, tenant, "POST", "/sessions", json={"agent": "nobody"})
    assert foreign.status_code == missing.status_code == 400
    assert foreign.json()["error"] == {
        "message": "No agent found with slug 'theirs'.",
        "type": "invalid_request_error",
        "param": "agent",
        "code": "agent_not_found",
    }
    assert missing.json()["error"]["message"] == "No agent found with slug 'nobody'."
    assert snapshot(tenant) == []


BAD_SESSION_FIELDS = [
    pytest.param({"title": 42}, "title", id="title-number"),
    pytest.param({"title": None}, "title", id="title-null"),
    pytest.param({"title": "t" * 201}, "title", id="title-201-characters"),
    pytest.param({"metadata": "team=red"}, "metadata", id="metadata-string"),
    pytest.param({"metadata": ["red"]}, "metadata", id="metadata-list"),
    pytest.param({"metadata": {"team": 1}}, "metadata.team", id="metadata-value-number"),
    pytest.param({"metadata": {"team": "r" * 513}}, "metadata.team", id="metadata-value-513"),
    pytest.param({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", id="metadata-17-keys"),
    pytest.param({"metadata": {"k" * 65: "v"}}, "metadata", id="metadata-key-65"),
    pytest.param({"metadata": {"": "v"}}, "metadata", id="metadata-key-empty"),
    pytest.param({"colour": "red"}, "colour", id="unknown-field"),
]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        *BAD_SESSION_FIELDS,
        pytest.param({"id": "has space"}, "id", id="id-malformed"),
        pytest.param({"id": 7}, "id", id="id-number"),
        pytest.param({"id": "i" * 129}, "id", id="id-129"),
        pytest.param({"agent": 1}, "agent", id="agent-number"),
    ],
)
def test_create_refuses_bad_fields_naming_them_and_creates_nothing(stack, tenant, body, param):
    response = api(
        stack, tenant, "POST", "/sessions", json={"id": "wanted", **body} if "id" not in body else body
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert snapshot(tenant) == []


# --- update --------------------------------------------------------------------------------------------


def test_patch_changes_title_and_replaces_metadata(stack, tenant):
    create(stack, tenant, id="edit-1", title="Old", metadata={"team": "red", "tier": "gold"})
    response = api(stack, tenant, "PATCH", "/sessions/edit-1", json={"title": "New"})
    assert response.status_code == 200
    assert (response.json()["title"], response.json()["metadata"]) == ("New", {"team": "red", "tier": "gold"})
    response = api(stack, tenant, "PATCH", "/sessions/edit-1", json={"metadata": {"team": "blue"}})
    assert (response.json()["title"], response.json()["metadata"]) == ("New", {"team": "blue"})
    response = api(stack, tenant, "PATCH", "/sessions/edit-1", json={"title": "", "metadata": {}})
    assert (response.json()["title"], response.json()["metadata"]) == ("", {})
    session = Session.objects.get(organization=tenant.organization, external_id="edit-1")
    assert (session.title, session.metadata) == ("", {})


@pytest.mark.parametrize(
    ("body", "param"),
    [*BAD_SESSION_FIELDS, pytest.param({"agent": "echo"}, "agent", id="agent-not-updatable")],
)
def test_patch_refuses_bad_fields_naming_them_and_changes_nothing(stack, tenant, body, param):
    create(stack, tenant, id="edit-2", title="Kept", metadata={"team": "red"})
    before = snapshot(tenant)
    response = api(stack, tenant, "PATCH", "/sessions/edit-2", json={"title": "Changed", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert snapshot(tenant) == before


# --- export --------------------------------------------------------------------------------------------


def test_export_downloads_the_session_its_messages_and_its_turns(stack, tenant):
    # given a session with a completed and a failed turn
    Agent.objects.create(
        organization=tenant.organization, slug="flaky", name="Flaky", backend_config={"fail_after_chunks": 0}
    )
    create(stack, tenant, id="exp-1", title="Export me", metadata={"team": "red"})
    answer(chat(stack, tenant, "first", session_id="exp-1", user="alice"))
    failed = chat(stack, tenant, "second", model="flaky", session_id="exp-1")
    assert failed.status_code == 500
    # when
    response = api(stack, tenant, "GET", "/sessions/exp-1/export")
    # then
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Disposition"] == 'attachment; filename="session-exp-1.json"'
    export = response.json()
    assert export["object"] == "session.export"
    assert abs(export["exported_at"] - time.time()) < 60
    session = export["session"]
    assert (session["id"], session["title"], session["metadata"], session["user"]) == (
        "exp-1",
        "Export me",
        {"team": "red"},
        "alice",
    )
    assert (session["message_count"], session["turn_count"]) == (3, 2)
    assert [(m["seq"], m["role"], m["content"]) for m in export["messages"]] == [
        (1, "user", "first"),
        (2, "assistant", "You said: first\n(1 message in context)"),
        (3, "user", "second"),
    ]
    turns = export["turns"]
    assert [(t["position"], t["status"], t["model"]) for t in turns] == [
        (1, "completed", "echo"),
        (2, "failed", "flaky"),
    ]
    assert [t["id"] for t in turns] == list(
        Turn.objects.filter(session__external_id="exp-1", organization=tenant.organization)
        .order_by("position")
        .values_list("id", flat=True)
    )
    assert export["messages"][0]["turn_id"] == turns[0]["id"]
    assert turns[0]["usage"]["completion_tokens"] > 0
    assert turns[0]["error"] is None
    assert turns[1]["error"]["code"] == "agent_error"
    timings = turns[0]["timings"]
    assert (
        timings["queued_at"] <= timings["started_at"] <= timings["first_token_at"] <= timings["finished_at"]
    )
    assert timings["duration_ms"] >= timings["time_to_first_token_ms"] >= 0


def test_export_of_another_organizations_session_looks_missing(stack, tenant, other_tenant):
    answer(chat(stack, other_tenant, "canary-77", session_id="their-exp"))
    foreign = api(stack, tenant, "GET", "/sessions/their-exp/export")
    missing = api(stack, tenant, "GET", "/sessions/no-exp/export")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == session_not_found("their-exp")
    assert missing.json() == session_not_found("no-exp")
    assert "canary" not in foreign.text


# --- fork ------------------------------------------------------------------------------------------------


def four_messages(stack: Stack, tenant: Tenant, session_id: str) -> None:
    create(stack, tenant, id=session_id, title="Trip", metadata={"team": "red"})
    answer(chat(stack, tenant, "one", session_id=session_id, user="alice"))
    answer(chat(stack, tenant, "two", session_id=session_id))


def test_fork_copies_the_first_n_messages_into_a_new_session(stack, tenant):
    four_messages(stack, tenant, "orig-1")
    # when
    response = api(stack, tenant, "POST", "/sessions/orig-1/fork", json={"messages": 3, "id": "fork-1"})
    # then
    assert response.status_code == 201, response.text
    fork = response.json()
    assert (fork["id"], fork["title"], fork["agent"], fork["metadata"], fork["user"]) == (
        "fork-1",
        "Fork of Trip",
        "echo",
        {"team": "red"},
        "alice",
    )
    assert fork["message_count"] == 3
    assert [(m["seq"], m["role"], m["content"], m["turn_id"]) for m in fork["messages"]] == [
        (1, "user", "one", None),
        (2, "assistant", "You said: one\n(1 message in context)", None),
        (3, "user", "two", None),
    ]
    assert transcript(tenant, "fork-1") == transcript(tenant, "orig-1")[:3]


def test_a_fork_and_its_original_go_their_own_ways(stack, tenant):
    four_messages(stack, tenant, "orig-2")
    fork_id = api(stack, tenant, "POST", "/sessions/orig-2/fork", json={"messages": 2}).json()["id"]
    assert fork_id.startswith("sess_")
    original = transcript(tenant, "orig-2")
    # when the fork continues
    assert answer(chat(stack, tenant, "three", session_id=fork_id)) == (
        'You said: three\nEarlier you said: "one"\n(3 messages in context)'
    )
    # then the original is unchanged, and it continues on its own
    assert transcript(tenant, "orig-2") == original
    answer(chat(stack, tenant, "four", session_id="orig-2"))
    assert len(transcript(tenant, fork_id)) == 4
    # and deleting the original keeps the fork
    assert api(stack, tenant, "DELETE", "/sessions/orig-2").status_code == 200
    assert len(transcript(tenant, fork_id)) == 4


def test_fork_of_an_untitled_session_is_named_after_its_id(stack, tenant):
    answer(chat(stack, tenant, session_id="plain"))
    fork = api(stack, tenant, "POST", "/sessions/plain/fork", json={"messages": 1}).json()
    assert fork["title"] == "Fork of plain"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        pytest.param({"messages": 0}, 400, "messages", id="zero"),
        pytest.param({"messages": 5}, 400, "messages", id="more-than-the-session-has"),
        pytest.param({"messages": "2"}, 400, "messages", id="string"),
        pytest.param({"messages": 2.0}, 400, "messages", id="float"),
        pytest.param({"messages": True}, 400, "messages", id="bool"),
        pytest.param({}, 400, "messages", id="missing"),
        pytest.param({"messages": 2, "id": "bad id"}, 400, "id", id="id-malformed"),
        pytest.param({"messages": 2, "id": "orig-3"}, 409, "id", id="id-in-use"),
        pytest.param({"messages": 2, "title": "x"}, 400, "title", id="unknown-field"),
    ],
)
def test_fork_refuses_bad_requests_naming_the_field_and_creates_nothing(stack, tenant, body, status, param):
    four_messages(stack, tenant, "orig-3")
    before = snapshot(tenant)
    response = api(stack, tenant, "POST", "/sessions/orig-3/fork", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert snapshot(tenant) == before


def test_fork_of_another_organizations_session_looks_missing(stack, tenant, other_tenant):
    answer(chat(stack, other_tenant, "canary-12", session_id="their-orig"))
    foreign = api(stack, tenant, "POST", "/sessions/their-orig/fork", json={"messages": 1, "id": "stolen"})
    missing = api(stack, tenant, "POST", "/sessions/no-orig/fork", json={"messages": 1, "id": "stolen"})
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == session_not_found("their-orig")
    assert missing.json() == session_not_found("no-orig")
    assert snapshot(tenant) == []
    assert Session.objects.filter(organization=other_tenant.organization).count() == 1


# --- cross-tenant update and delete ------------------------------------------------------------------


def test_patch_and_delete_of_another_organizations_session_look_missing(stack, tenant, other_tenant):
    answer(chat(stack, other_tenant, "canary-3", session_id="their-edit"))
    theirs = snapshot(other_tenant)
    patched = api(stack, tenant, "PATCH", "/sessions/their-edit", json={"title": "Mine now"})
    deleted = api(stack, tenant, "DELETE", "/sessions/their-edit")
    missing = api(stack, tenant, "PATCH", "/sessions/no-edit", json={"title": "Mine now"})
    assert patched.status_code == deleted.status_code == missing.status_code == 404
    assert patched.json() == deleted.json() == session_not_found("their-edit")
    assert missing.json() == session_not_found("no-edit")
    assert snapshot(other_tenant) == theirs


# --- session_reset -----------------------------------------------------------------------------------------


def test_session_reset_starts_the_transcript_over(stack, tenant):
    # given a session with four messages
    answer(chat(stack, tenant, "one", session_id="reset-1"))
    answer(chat(stack, tenant, "two", session_id="reset-1"))
    # when a request asks for a reset
    reply = answer(chat(stack, tenant, "fresh start", session_id="reset-1", session_reset=True))
    # then the agent saw only the new message, and the transcript starts over from it
    assert reply == "You said: fresh start\n(1 message in context)"
    assert transcript(tenant, "reset-1") == [(1, "user", "fresh start"), (2, "assistant", reply)]
    session = Session.objects.get(organization=tenant.organization, external_id="reset-1")
    assert (session.message_count, session.turn_count) == (2, 3)
    # and the conversation goes on from there
    assert answer(chat(stack, tenant, "next", session_id="reset-1")).endswith("(3 messages in context)")


def test_session_reset_false_keeps_the_transcript(stack, tenant):
    answer(chat(stack, tenant, "one", session_id="reset-2"))
    assert answer(chat(stack, tenant, "two", session_id="reset-2", session_reset=False)).endswith(
        "(3 messages in context)"
    )


def test_session_reset_must_be_a_boolean(stack, tenant):
    answer(chat(stack, tenant, "one", session_id="reset-3"))
    before = snapshot(tenant)
    response = chat(stack, tenant, "two", session_id="reset-3", session_reset="yes")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "session_reset"
    assert snapshot(tenant) == before


def test_session_reset_happens_in_turn_order_after_a_running_turn(stack, tenant):
    # given a slow turn running on the session
    Agent.objects.create(
        organization=tenant.organization, slug="slow", name="Slow", backend_config={"delay_seconds": 1.5}
    )
    answer(chat(stack, tenant, "old", session_id="reset-4"))
    slow: dict[str, httpx.Response] = {}
    running = threading.Thread(
        target=lambda: slow.update(
            response=chat(stack, tenant, "slow one", model="slow", session_id="reset-4")
        )
    )
    running.start()
    deadline = time.monotonic() + 10
    while not Turn.objects.filter(session__external_id="reset-4", status="running").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # when a reset request arrives meanwhile
    reply = answer(chat(stack, tenant, "after reset", session_id="reset-4", session_reset=True))
    running.join()
    # then the reset came after the slow turn's answer, not before it
    assert answer(slow["response"]).endswith("(3 messages in context)")
    assert transcript(tenant, "reset-4") == [(1, "user", "after reset"), (2, "assistant", reply)]


def test_session_reset_of_another_organizations_session_id_touches_nothing_of_theirs(
    stack, tenant, other_tenant
):
    answer(chat(stack, other_tenant, "canary-9", session_id="their-reset"))
    theirs = snapshot(other_tenant)
    answer(chat(stack, tenant, "mine", session_id="their-reset", session_reset=True))
    assert snapshot(other_tenant) == theirs


# --- session id synonyms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        pytest.param({"conversation_id": "syn-1"}, id="conversation_id"),
        pytest.param({"thread_id": "syn-1"}, id="thread_id"),
        pytest.param({"conversation": "syn-1"}, id="conversation-string"),
        pytest.param({"conversation": {"id": "syn-1"}}, id="conversation-object"),
        pytest.param(
            {"session_id": "syn-1", "conversation_id": "syn-1", "thread_id": "syn-1"}, id="all-agree"
        ),
    ],
)
def test_synonyms_of_session_id_continue_the_same_session(stack, tenant, field):
    answer(chat(stack, tenant, "first", session_id="syn-1"))
    response = chat(stack, tenant, "second", **field)
    assert response.json()["session_id"] == "syn-1"
    assert response.headers["X-Session-Id"] == "syn-1"
    assert answer(response).endswith("(3 messages in context)")
    assert len(transcript(tenant, "syn-1")) == 4


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        pytest.param(
            {"session_id": "a", "conversation_id": "b"}, "conversation_id", id="session-vs-conversation_id"
        ),
        pytest.param(
            {"conversation_id": "a", "thread_id": "b"}, "thread_id", id="conversation_id-vs-thread_id"
        ),
        pytest.param(
            {"thread_id": "a", "conversation": {"id": "b"}}, "conversation", id="thread_id-vs-conversation"
        ),
        pytest.param({"model": "echo:a", "thread_id": "b"}, "thread_id", id="model-session-vs-thread_id"),
        pytest.param({"conversation_id": "has space"}, "conversation_id", id="conversation_id-malformed"),
        pytest.param({"thread_id": 42}, "thread_id", id="thread_id-number"),
        pytest.param({"conversation": {"id": "x" * 129}}, "conversation.id", id="conversation-id-129"),
        pytest.param({"conversation": {"id": "a b"}}, "conversation.id", id="conversation-id-malformed"),
        pytest.param({"conversation": {}}, "conversation.id", id="conversation-object-without-id"),
        pytest.param({"conversation": 5}, "conversation", id="conversation-number"),
    ],
)
def test_conflicting_or_malformed_session_ids_are_refused_naming_the_field(stack, tenant, fields, param):
    response = chat(stack, tenant, "hi", **fields)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert snapshot(tenant) == []
    assert not Turn.objects.filter(organization=tenant.organization).exists()


def test_a_synonym_naming_another_organizations_session_starts_a_separate_one(stack, tenant, other_tenant):
    answer(chat(stack, other_tenant, "canary-44", session_id="their-thread"))
    theirs = snapshot(other_tenant)
    reply = answer(chat(stack, tenant, "hello", thread_id="their-thread"))
    assert reply == "You said: hello\n(1 message in context)"
    assert snapshot(other_tenant) == theirs


def test_recently_created_sessions_come_first_with_created_after_now_minus_a_minute(stack, tenant):
    create(stack, tenant, id="recent")
    create(stack, tenant, id="ancient")
    set_created(tenant, "ancient", datetime.now(UTC) - timedelta(days=400))
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert listed(stack, tenant, created_after=since) == ["recent"]
