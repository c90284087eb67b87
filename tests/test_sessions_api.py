"""GET/DELETE /v1/sessions and GET /v1/models, with a cross-tenant test for each endpoint."""

from __future__ import annotations

import httpx
import pytest

from agents.models import Agent
from sessions.models import Message, Session
from tests.live import api


def chat(stack, tenant, session_id: str, text: str = "hi") -> None:
    response = api(
        stack,
        tenant,
        "POST",
        "/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": text}], "session_id": session_id},
    )
    assert response.status_code == 200, response.text


def test_get_session_returns_its_messages(stack, tenant):
    chat(stack, tenant, "read-1", "hello")
    response = api(stack, tenant, "GET", "/sessions/read-1")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "read-1"
    assert body["object"] == "session"
    assert body["agent"] == "echo"
    assert body["message_count"] == 2
    assert [(m["seq"], m["role"], m["content"]) for m in body["messages"]] == [
        (1, "user", "hello"),
        (2, "assistant", "You said: hello\n(1 message in context)"),
    ]
    assert body["messages"][0]["turn_id"] == body["messages"][1]["turn_id"]
    assert set(body["messages"][0]) == {
        "seq",
        "role",
        "content",
        "name",
        "tool_calls",
        "tool_call_id",
        "turn_id",
        "created",
    }


def test_list_sessions_newest_first_with_cursor_pagination(stack, tenant):
    for index in range(5):
        chat(stack, tenant, f"list-{index}")
    first = api(stack, tenant, "GET", "/sessions", params={"limit": 2}).json()
    assert [s["id"] for s in first["data"]] == ["list-4", "list-3"]
    assert first["has_more"] is True
    assert (first["first_id"], first["last_id"]) == ("list-4", "list-3")
    second = api(stack, tenant, "GET", "/sessions", params={"limit": 2, "after": first["last_id"]}).json()
    assert [s["id"] for s in second["data"]] == ["list-2", "list-1"]
    third = api(stack, tenant, "GET", "/sessions", params={"limit": 2, "after": second["last_id"]}).json()
    assert [s["id"] for s in third["data"]] == ["list-0"]
    assert third["has_more"] is False
    assert "messages" not in third["data"][0]


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
def test_list_sessions_refuses_a_bad_limit(stack, tenant, limit):
    response = api(stack, tenant, "GET", "/sessions", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_delete_session_removes_it_and_its_messages(stack, tenant):
    chat(stack, tenant, "gone-1")
    response = api(stack, tenant, "DELETE", "/sessions/gone-1")
    assert response.status_code == 200
    assert response.json() == {"id": "gone-1", "object": "session.deleted", "deleted": True}
    assert not Session.objects.filter(organization=tenant.organization, external_id="gone-1").exists()
    assert not Message.objects.filter(session__organization=tenant.organization).exists()
    assert api(stack, tenant, "GET", "/sessions/gone-1").status_code == 404


def test_foreign_session_looks_exactly_like_a_missing_one(stack, tenant, other_tenant):
    # given a session of the other organization
    chat(stack, other_tenant, "theirs-1", "canary-b9")
    # when this tenant reads, lists and deletes it
    foreign = api(stack, tenant, "GET", "/sessions/theirs-1")
    missing = api(stack, tenant, "GET", "/sessions/theirs-2")
    deleted = api(stack, tenant, "DELETE", "/sessions/theirs-1")
    listed = api(stack, tenant, "GET", "/sessions").json()
    # then every answer is a 404 identical to a missing session's (but for the id), and nothing changed
    assert foreign.status_code == missing.status_code == deleted.status_code == 404
    assert foreign.json() == {
        "error": {
            "message": "No session found with id 'theirs-1'.",
            "type": "invalid_request_error",
            "param": "session_id",
            "code": "session_not_found",
        }
    }
    assert missing.json()["error"]["message"] == "No session found with id 'theirs-2'."
    assert deleted.json() == foreign.json()
    assert listed["data"] == []
    assert Message.objects.filter(session__organization=other_tenant.organization).count() == 2


def test_foreign_session_as_list_cursor_is_refused(stack, tenant, other_tenant):
    chat(stack, other_tenant, "their-cursor")
    response = api(stack, tenant, "GET", "/sessions", params={"after": "their-cursor"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "after"


def test_models_lists_the_organizations_enabled_agents(stack, tenant, other_tenant):
    Agent.objects.create(organization=tenant.organization, slug="support", name="Support")
    Agent.objects.create(organization=tenant.organization, slug="hidden", name="Hidden", enabled=False)
    Agent.objects.create(organization=other_tenant.organization, slug="foreign", name="Foreign")
    body = api(stack, tenant, "GET", "/models").json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        ("echo", "model", tenant.organization.slug),
        ("support", "model", tenant.organization.slug),
    ]


def test_models_through_the_sdk(client, tenant):
    assert [model.id for model in client.models.list()] == ["echo"]
    assert client.models.retrieve("echo").owned_by == tenant.organization.slug


def test_foreign_model_looks_missing(stack, tenant, other_tenant):
    Agent.objects.create(organization=other_tenant.organization, slug="foreign", name="Foreign")
    foreign = api(stack, tenant, "GET", "/models/foreign")
    missing = api(stack, tenant, "GET", "/models/nothing")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["error"]["code"] == missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sessions"),
        ("GET", "/sessions/x"),
        ("DELETE", "/sessions/x"),
        ("GET", "/models"),
        ("GET", "/models/echo"),
    ],
)
def test_every_endpoint_needs_a_key(stack, method, path):
    response = httpx.request(method, f"{stack.api_url}{path}")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
