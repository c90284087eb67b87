"""Tenant isolation, as one matrix: every route that names an object (sessions and their export,
fork, update and delete; turns, their stream and its replay from Last-Event-ID, their cancel;
agents and models; API keys; members), called by one organization with another organization's
object, answers exactly what it answers for an object that does not exist, and changes nothing; a
running turn of another organization is not cancelled; another organization's session id in a
chat request, named every way a request names a session, streamed or not, neither continues nor
reveals that session (a Parley-issued id is a 404 like a missing one; a client-chosen id names a
new session of the caller's own, as ids are unique within an organization); lists, settings and
usage show nothing of the other organization; and a canary in one organization's transcript
reaches nobody else."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import httpx
import pytest

from accounts.models import ApiKey, AutomationSettings, Membership
from agents.backends import backend_for
from agents.models import Agent
from sessions.models import Message, Session, Turn
from tests.conftest import make_person, stored_rows
from tests.session_naming import WAYS, ask, ask_naming, session_not_found, user
from tests.sse import parse_sse_lines

UNKNOWN_SESSION = "sess_" + "Z" * 24


def _request(
    stack, token: str, method: str, path: str, body: dict | None = None, headers: dict | None = None
) -> httpx.Response:
    return httpx.request(
        method,
        f"{stack.url}{path}",
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        json=body,
        timeout=30,
    )


def _transcript(tenant, session_id: str) -> list[tuple[str, object]]:
    return list(
        Message.objects.filter(
            session__organization=tenant.organization, session__external_id=session_id
        ).values_list("role", "content")
    )


def _upstream_agent(organization, fake_upstream, slug: str, model: str = "fake-echo") -> Agent:
    config = backend_for("openai").validate_config(
        {"base_url": f"{fake_upstream.url}/v1", "model": model}, previous={}
    )
    return Agent.objects.create(
        organization=organization, slug=slug, name=slug, backend="openai", backend_config=config
    )


def _state_of(organization, turn_id: str) -> dict:
    return {
        "messages": Message.objects.filter(session__organization=organization).count(),
        "sessions": Session.objects.filter(organization=organization).count(),
        "agents": sorted(Agent.objects.filter(organization=organization).values_list("slug", "name")),
        "keys": list(ApiKey.objects.filter(organization=organization).values_list("pk", "revoked_at")),
        "members": sorted(
            Membership.objects.filter(organization=organization).values_list("user_id", "role")
        ),
        "turn": Turn.objects.values("status", "finished_at").get(pk=turn_id),
    }


@dataclass
class Theirs:
    """Organization A's objects, as organization B (`tenant`) names them, and how A stood."""

    canary: str
    ids: dict[str, tuple[str, str]]  # by kind: A's object, a missing one of the same shape
    before: dict
    turn_id: str
    owner_token: str  # B's owner, for the endpoints only owners may call


@pytest.fixture
def theirs(stack, tenant, other_tenant, fake_upstream) -> Theirs:
    # organization A (other_tenant) with a session that holds a canary, its turn, an agent, a key
    # and a member
    canary = f"canary-{uuid.uuid4().hex}"
    _upstream_agent(other_tenant.organization, fake_upstream, "theirs")
    chat = _request(
        stack,
        other_tenant.key,
        "POST",
        "/v1/chat/completions",
        {"model": "theirs", "messages": [{"role": "user", "content": canary}], "session_id": "private-1"},
    )
    assert chat.status_code == 200
    turn_id = chat.headers["X-Turn-Id"]
    their_key = ApiKey.objects.filter(organization=other_tenant.organization).first()
    their_member = make_person(other_tenant, Membership.Role.MEMBER)
    # B signs in as its owner too
    owner = make_person(tenant, Membership.Role.OWNER)
    owner_token = httpx.post(
        f"{stack.url}/v1/auth/token",
        json={"username": owner.user.username, "password": owner.password},
        timeout=30,
    ).json()["access"]
    return Theirs(
        canary=canary,
        ids={
            "session": ("private-1", "private-0"),
            "turn": (turn_id, "turn_" + "0" * 24),
            "agent": ("theirs", "nobody"),
            "key": (str(their_key.pk), "999999999"),
            "member": (str(their_member.user.pk), "999999998"),
        },
        before=_state_of(other_tenant.organization, turn_id),
        turn_id=turn_id,
        owner_token=owner_token,
    )


# Every route that names an object: (kind, method, path, body, headers, who: B's "key" or "owner").
OBJECT_ROUTES = [
    ("session", "GET", "/v1/sessions/{}", None, {}, "key"),
    ("session", "PATCH", "/v1/sessions/{}", {"title": "stolen"}, {}, "key"),
    ("session", "DELETE", "/v1/sessions/{}", None, {}, "key"),
    ("session", "GET", "/v1/sessions/{}/export", None, {}, "key"),
    ("session", "POST", "/v1/sessions/{}/fork", {"messages": 1}, {}, "key"),
    ("session", "POST", "/v1/sessions/{}/fork", {"messages": 1, "id": "my-copy"}, {}, "key"),
    ("turn", "GET", "/v1/turns/{}", None, {}, "key"),
    ("turn", "GET", "/v1/turns/{}/events", None, {}, "key"),
    ("turn", "GET", "/v1/turns/{}/events", None, {"Last-Event-ID": "1"}, "key"),
    ("turn", "GET", "/v1/turns/{}/events", None, {"Last-Event-ID": "0"}, "key"),
    ("turn", "GET", "/v1/turns/{}/events?include_usage=true&include_tool_steps=true", None, {}, "key"),
    ("turn", "POST", "/v1/turns/{}/cancel", None, {}, "key"),
    ("agent", "GET", "/v1/agents/{}", None, {}, "key"),
    ("agent", "PATCH", "/v1/agents/{}", {"name": "stolen"}, {}, "key"),
    ("agent", "DELETE", "/v1/agents/{}", None, {}, "key"),
    ("agent", "GET", "/v1/models/{}", None, {}, "key"),
    ("key", "GET", "/v1/api-keys/{}", None, {}, "key"),
    ("key", "DELETE", "/v1/api-keys/{}", None, {}, "key"),
    ("member", "GET", "/v1/members/{}", None, {}, "owner"),
    ("member", "PATCH", "/v1/members/{}", {"role": "owner"}, {}, "owner"),
    ("member", "DELETE", "/v1/members/{}", None, {}, "owner"),
]


@pytest.mark.parametrize(
    ("kind", "method", "template", "body", "headers", "who"),
    [
        pytest.param(*route, id=f"{route[1]} {route[2]}" + "".join(f" {k}: {v}" for k, v in route[4].items()))
        for route in OBJECT_ROUTES
    ],
)
def test_another_organizations_object_looks_missing_and_is_untouched(
    stack, tenant, other_tenant, theirs, kind, method, template, body, headers, who
):
    token = tenant.key if who == "key" else theirs.owner_token
    their_id, missing_id = theirs.ids[kind]
    # when organization B names A's object, and a missing one of the same shape
    foreign = _request(stack, token, method, template.format(their_id), body, headers)
    missing = _request(stack, token, method, template.format(missing_id), body, headers)
    # then both are the same 404 envelope, naming only the id asked for
    where = f"{method} {template.format(their_id)}"
    assert foreign.status_code == missing.status_code == 404, (where, foreign.text, missing.text)
    assert foreign.headers["content-type"] == "application/json", where
    assert foreign.json() == json.loads(missing.text.replace(missing_id, their_id)), where
    assert foreign.json()["error"]["code"] == missing.json()["error"]["code"] != "", where
    assert theirs.canary not in foreign.text, where
    # and nothing of A's changed, and B got nothing new
    assert _state_of(other_tenant.organization, theirs.turn_id) == theirs.before
    assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}


def test_another_organizations_objects_are_in_none_of_its_lists(stack, tenant, other_tenant, theirs):
    their_key = ApiKey.objects.filter(organization=other_tenant.organization).first()
    their_member = Membership.objects.filter(
        organization=other_tenant.organization, role=Membership.Role.MEMBER
    ).get()
    for path, token in (
        ("/v1/sessions", tenant.key),
        ("/v1/agents", tenant.key),
        ("/v1/models", tenant.key),
        ("/v1/api-keys", tenant.key),
        ("/v1/members", theirs.owner_token),
        ("/v1/usage?group_by=agent", tenant.key),
        ("/v1/settings/automation", tenant.key),
    ):
        response = _request(stack, token, "GET", path)
        assert response.status_code == 200, (path, response.text)
        for secret in (theirs.canary, "private-1", "theirs", their_key.prefix, their_member.user.username):
            assert secret not in response.text, (path, secret)


def test_another_organizations_running_turn_is_not_cancelled(stack, tenant, other_tenant, fake_upstream):
    # given A's turn, running (its upstream answers a word every 0.4 s)
    _upstream_agent(other_tenant.organization, fake_upstream, "slow", model="fake-drip")
    with httpx.stream(
        "POST",
        f"{stack.api_url}/chat/completions",
        json={"model": "slow", "messages": [{"role": "user", "content": "take your time"}], "stream": True},
        headers={"Authorization": f"Bearer {other_tenant.key}"},
        timeout=30,
    ) as streamed:
        turn_id = streamed.headers["X-Turn-Id"]
        # when B cancels it by its id
        cancel = _request(stack, tenant.key, "POST", f"/v1/turns/{turn_id}/cancel")
        status_meanwhile = Turn.objects.get(pk=turn_id).status
        read = parse_sse_lines(streamed.iter_lines())
    # then B is told there is no such turn, and A's turn answers to the end
    assert (cancel.status_code, cancel.json()["error"]["code"]) == (404, "turn_not_found")
    assert status_meanwhile in (Turn.Status.QUEUED, Turn.Status.RUNNING)
    assert (read.content(), read.done_count, read.errors) == ("slow and steady wins the race", 1, [])
    assert Turn.objects.get(pk=turn_id).status == Turn.Status.COMPLETED


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("issued_by", ["parley", "client"])
def test_another_organizations_session_id_in_a_chat_request_neither_continues_nor_reveals_it(
    stack, tenant, other_tenant, issued_by, way, stream
):
    # given A's session holding a canary, its id issued by Parley (sess_...) or chosen by A's client
    canary = f"canary-{uuid.uuid4().hex[:8]}"
    chosen = {} if issued_by == "parley" else {"session_id": f"chosen-{uuid.uuid4().hex[:8]}"}
    created = ask(stack, other_tenant, {"messages": [user(canary)], **chosen}, stream=False)
    their_id = created.json()["session_id"]
    their_rows, their_transcript = stored_rows(other_tenant), _transcript(other_tenant, their_id)
    # when B names it in a chat request, every way a request names a session, streamed or not
    foreign = ask_naming(stack, tenant, way, their_id, stream=stream)
    # then a Parley-issued id is a 404 exactly like a missing one, and nothing is stored; a
    # client-chosen id names B's own session, new (ids are unique within an organization)
    if issued_by == "parley":
        missing = ask_naming(stack, tenant, way, UNKNOWN_SESSION, stream=stream)
        assert (foreign.status_code, foreign.json()) == (404, session_not_found(their_id))
        assert (missing.status_code, missing.json()) == (404, session_not_found(UNKNOWN_SESSION))
        assert stored_rows(tenant) == {"sessions": 0, "turns": 0, "messages": 0}
    else:
        assert (foreign.status_code, foreign.headers["X-Session-Id"]) == (200, their_id)
        answer = (
            parse_sse_lines(foreign.text.splitlines()).content()
            if stream
            else foreign.json()["choices"][0]["message"]["content"]
        )
        assert answer == "You said: are you there?\n(1 message in context)"
        assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}
        assert _transcript(tenant, their_id) == [
            ("user", "are you there?"),
            ("assistant", "You said: are you there?\n(1 message in context)"),
        ]
    assert canary not in foreign.text
    # and A's session is as it was
    assert stored_rows(other_tenant) == their_rows
    assert _transcript(other_tenant, their_id) == their_transcript


def test_a_canary_in_one_transcript_reaches_no_other_organization(stack, tenant, other_tenant, fake_upstream):
    # given A's session "shared" holding a canary, answered through a real upstream
    canary = f"canary-{uuid.uuid4().hex}"
    for organization in (other_tenant.organization, tenant.organization):
        _upstream_agent(organization, fake_upstream, "support")
    AutomationSettings.objects.filter(organization=tenant.organization).update(history_max_messages=50)
    first = _request(
        stack,
        other_tenant.key,
        "POST",
        "/v1/chat/completions",
        {
            "model": "support",
            "messages": [{"role": "user", "content": f"remember {canary}"}],
            "session_id": "shared",
        },
    )
    assert canary in first.text
    # when B uses the same session id, streamed and not
    marker = f"b-{uuid.uuid4().hex[:8]}"
    plain = _request(
        stack,
        tenant.key,
        "POST",
        "/v1/chat/completions",
        {
            "model": "support",
            "messages": [{"role": "user", "content": f"what did I say? {marker}"}],
            "session_id": "shared",
        },
    )
    streamed = _request(
        stack,
        tenant.key,
        "POST",
        "/v1/chat/completions",
        {
            "model": "support",
            "messages": [{"role": "user", "content": f"again {marker}"}],
            "session_id": "shared",
            "stream": True,
        },
    )
    # then neither B's answers nor what the upstream received for B holds the canary
    assert plain.status_code == streamed.status_code == 200
    assert canary not in plain.text and canary not in streamed.text
    for_b = fake_upstream.received(marker)
    assert len(for_b) == 2
    assert all(canary not in request.body.decode() for request in for_b)
    assert [m["content"] for m in for_b[0].json["messages"]] == [f"what did I say? {marker}"]
