"""Session ids Parley issues (sess_…, and every other prefix it hands out) are reserved: a client
can name them but never create one, and an unknown one is a 404 on every route and synonym,
whatever auto_create_sessions says. Client-chosen ids keep being created on first use. (Another
organization's session ids, named every way: tests/test_isolation.py.)"""

from __future__ import annotations

import pytest

from accounts.models import AutomationSettings
from sessions.ids import PUBLIC_ID_PREFIXES, is_reserved_session_id, new_public_id
from sessions.models import Session
from tests.conftest import stored_rows
from tests.live import api
from tests.session_naming import WAYS, ask, ask_naming, session_not_found, user
from tests.sse import post_stream

UNKNOWN = "sess_" + "Z" * 24


RESERVED_MESSAGE = (
    "Ids starting with 'sess_' or 'turn_' are issued by Parley only; choose another id or leave it out."
)
RESERVED_ID_REFUSED = {
    "error": {
        "message": f"Invalid value for 'id': {RESERVED_MESSAGE}",
        "type": "invalid_request_error",
        "param": "id",
        "code": "invalid_value",
    },
    "detail": [{"loc": ["body", "id"], "msg": RESERVED_MESSAGE, "type": "reserved"}],
}


def test_only_parleys_own_prefixes_are_reserved():
    assert PUBLIC_ID_PREFIXES == ("sess", "turn")
    for prefix in PUBLIC_ID_PREFIXES:
        assert is_reserved_session_id(new_public_id(prefix))
    for client_chosen in ("sess-1", "session_1", "Sess_1", "my_sess_1", "turnip", "support-42"):
        assert not is_reserved_session_id(client_chosen)
    with pytest.raises(ValueError):
        new_public_id("chat")


@pytest.mark.parametrize("auto_create", [True, False], ids=["auto-create-on", "auto-create-off"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("way", WAYS)
def test_an_unknown_server_issued_session_id_is_404_and_nothing_is_stored(
    stack, tenant, way, stream, auto_create
):
    AutomationSettings.objects.filter(organization=tenant.organization).update(
        auto_create_sessions=auto_create
    )
    response = ask_naming(stack, tenant, way, UNKNOWN, stream=stream)
    assert (response.status_code, response.headers["content-type"]) == (404, "application/json")
    assert response.json() == session_not_found(UNKNOWN)
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_an_unknown_turn_prefixed_session_id_is_404_too(stack, tenant):
    turn_like = "turn_" + "Q" * 24
    response = ask(stack, tenant, {"session_id": turn_like}, stream=False)
    assert (response.status_code, response.json()) == (404, session_not_found(turn_like))
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_a_deleted_session_is_reported_not_silently_restarted(stack, tenant):
    # given a session Parley created and the client then deleted
    first = ask(stack, tenant, {}, stream=False)
    session_id = first.json()["session_id"]
    assert session_id.startswith("sess_")
    deleted = api(stack, tenant, "DELETE", f"/sessions/{session_id}")
    assert deleted.status_code == 200
    before = stored_rows(tenant)
    # when the client continues it, streamed or not
    plain = ask(stack, tenant, {"session_id": session_id}, stream=False)
    streamed = ask(stack, tenant, {"session_id": session_id}, stream=True)
    # then it learns the session is gone, and no new one takes its place
    assert (plain.status_code, plain.json()) == (404, session_not_found(session_id))
    assert (streamed.status_code, streamed.json()) == (404, session_not_found(session_id))
    assert stored_rows(tenant) == before == {"sessions": 0, "turns": 0, "messages": 0}


def test_a_server_issued_session_of_this_organization_is_continued(stack, tenant):
    created = api(stack, tenant, "POST", "/sessions", json={})
    session_id = created.json()["id"]
    _, read = post_stream(
        f"{stack.api_url}/chat/completions",
        tenant.key,
        {"model": "echo", "messages": [user("hello")], "stream": True, "thread_id": session_id},
    )
    assert read.content() == "You said: hello\n(1 message in context)"
    session = Session.objects.get(organization=tenant.organization, external_id=session_id)
    assert session.message_count == 2


@pytest.mark.parametrize("auto_create", [True, False], ids=["auto-create-on", "auto-create-off"])
def test_client_chosen_ids_are_created_on_first_use_only_with_auto_creation(stack, tenant, auto_create):
    AutomationSettings.objects.filter(organization=tenant.organization).update(
        auto_create_sessions=auto_create
    )
    response = ask(stack, tenant, {"session_id": "session_1"}, stream=False)
    if auto_create:
        assert (response.status_code, response.json()["session_id"]) == (200, "session_1")
        assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}
    else:
        assert (response.status_code, response.json()) == (404, session_not_found("session_1"))
        assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


@pytest.mark.parametrize("session_id", ["sess_mine", "turn_" + "A" * 24, "sess_"])
def test_a_client_cannot_create_a_session_with_a_reserved_id(stack, tenant, session_id):
    response = api(stack, tenant, "POST", "/sessions", json={"id": session_id, "title": "Mine"})
    assert (response.status_code, response.json()) == (400, RESERVED_ID_REFUSED)
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_a_fork_cannot_take_a_reserved_id(stack, tenant):
    # given a session with two messages
    assert ask(stack, tenant, {"session_id": "fork-me"}, stream=False).status_code == 200
    before = stored_rows(tenant)
    # when it is forked into a reserved id
    response = api(stack, tenant, "POST", "/sessions/fork-me/fork", json={"messages": 1, "id": "sess_fork"})
    # then the fork is refused naming `id`, and nothing was created
    assert (response.status_code, response.json()) == (400, RESERVED_ID_REFUSED)
    assert stored_rows(tenant) == before == {"sessions": 1, "turns": 1, "messages": 2}
