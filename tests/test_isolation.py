"""Tenant isolation, as one matrix: every endpoint that names an object, called by one
organization with another organization's object, answers exactly what it answers for an object
that does not exist, and changes nothing; lists, settings and usage show nothing of the other
organization; and a canary in one organization's transcript reaches nobody else."""

from __future__ import annotations

import json
import uuid

import httpx

from accounts.models import ApiKey, AutomationSettings, Membership
from agents.backends import backend_for
from agents.models import Agent
from sessions.models import Message, Session, Turn
from tests.conftest import make_person


def _request(stack, token: str, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(
        method, f"{stack.url}{path}", headers={"Authorization": f"Bearer {token}"}, json=body, timeout=30
    )


def _upstream_agent(organization, fake_upstream, slug: str) -> Agent:
    config = backend_for("openai").validate_config(
        {"base_url": f"{fake_upstream.url}/v1", "model": "fake-echo"}, previous={}
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


def test_another_organizations_objects_look_missing_on_every_endpoint(
    stack, tenant, other_tenant, fake_upstream
):
    # given organization A (other_tenant) with a session that holds a canary, its turn, an agent,
    # a key and a member
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
    before = _state_of(other_tenant.organization, turn_id)
    # B signs in as its owner too, for the endpoints only owners may call
    owner = make_person(tenant, Membership.Role.OWNER)
    owner_token = httpx.post(
        f"{stack.url}/v1/auth/token",
        json={"username": owner.user.username, "password": owner.password},
        timeout=30,
    ).json()["access"]
    # when organization B asks for each of A's objects, and for a missing one of the same shape
    objects = {
        "session": ("private-1", "private-0"),
        "turn": (turn_id, "turn_" + "0" * 24),
        "agent": ("theirs", "nobody"),
        "key": (str(their_key.pk), "999999999"),
        "member": (str(their_member.user.pk), "999999998"),
    }
    matrix = [
        ("session", "GET", "/v1/sessions/{}", None, tenant.key),
        ("session", "PATCH", "/v1/sessions/{}", {"title": "stolen"}, tenant.key),
        ("session", "DELETE", "/v1/sessions/{}", None, tenant.key),
        ("session", "GET", "/v1/sessions/{}/export", None, tenant.key),
        ("session", "POST", "/v1/sessions/{}/fork", {"messages": 1}, tenant.key),
        ("turn", "GET", "/v1/turns/{}", None, tenant.key),
        ("turn", "GET", "/v1/turns/{}/events", None, tenant.key),
        ("turn", "POST", "/v1/turns/{}/cancel", None, tenant.key),
        ("agent", "GET", "/v1/agents/{}", None, tenant.key),
        ("agent", "PATCH", "/v1/agents/{}", {"name": "stolen"}, tenant.key),
        ("agent", "DELETE", "/v1/agents/{}", None, tenant.key),
        ("agent", "GET", "/v1/models/{}", None, tenant.key),
        ("key", "GET", "/v1/api-keys/{}", None, tenant.key),
        ("key", "DELETE", "/v1/api-keys/{}", None, tenant.key),
        ("member", "GET", "/v1/members/{}", None, owner_token),
        ("member", "PATCH", "/v1/members/{}", {"role": "owner"}, owner_token),
        ("member", "DELETE", "/v1/members/{}", None, owner_token),
    ]
    for kind, method, template, body, token in matrix:
        theirs, missing_id = objects[kind]
        foreign = _request(stack, token, method, template.format(theirs), body)
        missing = _request(stack, token, method, template.format(missing_id), body)
        where = f"{method} {template.format(theirs)}"
        assert foreign.status_code == missing.status_code == 404, (where, foreign.text, missing.text)
        assert foreign.headers["content-type"] == "application/json", where
        assert foreign.json() == json.loads(missing.text.replace(missing_id, theirs)), where
        assert canary not in foreign.text, where
    # then nothing of A's changed
    assert _state_of(other_tenant.organization, turn_id) == before
    # and B's lists, settings and usage hold nothing of A's
    for path, token in (
        ("/v1/sessions", tenant.key),
        ("/v1/agents", tenant.key),
        ("/v1/models", tenant.key),
        ("/v1/api-keys", tenant.key),
        ("/v1/members", owner_token),
        ("/v1/usage?group_by=agent", tenant.key),
        ("/v1/settings/automation", tenant.key),
    ):
        response = _request(stack, token, "GET", path)
        assert response.status_code == 200, (path, response.text)
        for secret in (canary, "private-1", "theirs", their_key.prefix, their_member.user.username):
            assert secret not in response.text, (path, secret)


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
