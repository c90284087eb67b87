"""The Agents API: GET/POST /v1/agents, GET/PATCH/DELETE /v1/agents/{slug}, with a cross-tenant
test for each endpoint and the write-only secrets of the `openai` backend."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from accounts.services import organization_create
from agents.models import Agent
from sessions.models import Session
from tests.conftest import UPSTREAM_KEY_BY_PREFIX, UPSTREAM_KEY_LISTED
from tests.fakes import WEBHOOK_SECRET
from tests.live import api


def create(stack, tenant, **body) -> dict:
    response = api(stack, tenant, "POST", "/agents", json={"backend": "echo", **body})
    assert response.status_code == 201, response.text
    return response.json()


def chat(stack, tenant, model: str, text: str = "hi", **extra) -> httpx.Response:
    return api(
        stack,
        tenant,
        "POST",
        "/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}], **extra},
    )


def stored(tenant, slug: str) -> dict:
    """The agent's row as plain values, to show that a refused request changed nothing."""
    agent = Agent.objects.get(organization=tenant.organization, slug=slug)
    return {
        field.attname: getattr(agent, field.attname)
        for field in Agent._meta.concrete_fields
        if field.attname != "updated"
    } | {"updated": agent.updated}


def agent_slugs(tenant) -> list[str]:
    return sorted(Agent.objects.filter(organization=tenant.organization).values_list("slug", flat=True))


FULL_BODY = {
    "slug": "support",
    "name": "Support desk",
    "backend": "echo",
    "backend_config": {"delay_seconds": 0, "chunk_delay_seconds": 0},
    "system_prompt": "You are the support desk.",
    "default_params": {"temperature": 0.2, "max_tokens": 300, "stop": ["\n\n"]},
    "tools": [],
    "max_tool_steps": 3,
    "history_max_messages": 40,
    "history_max_tokens": 8000,
    "enabled": True,
}


# --- create, read, list -----------------------------------------------------------------------


def test_create_agent_returns_it_and_stores_it(stack, tenant):
    # when
    before = int(time.time())
    response = api(stack, tenant, "POST", "/agents", json=FULL_BODY)
    # then
    assert response.status_code == 201
    body = response.json()
    assert before <= body["created"] <= int(time.time()) + 1
    assert body["updated"] >= body["created"]
    assert {key: value for key, value in body.items() if key not in ("created", "updated")} == {
        "id": "support",
        "object": "agent",
        "name": "Support desk",
        "backend": "echo",
        "backend_config": {"delay_seconds": 0, "chunk_delay_seconds": 0},
        "system_prompt": "You are the support desk.",
        "default_params": {"temperature": 0.2, "max_tokens": 300, "stop": ["\n\n"]},
        "tools": [],
        "max_tool_steps": 3,
        "history_max_messages": 40,
        "history_max_tokens": 8000,
        "enabled": True,
    }
    agent = Agent.objects.get(organization=tenant.organization, slug="support")
    assert (agent.name, agent.backend, agent.system_prompt) == (
        "Support desk",
        "echo",
        FULL_BODY["system_prompt"],
    )
    assert agent.backend_config == {"delay_seconds": 0, "chunk_delay_seconds": 0}
    assert agent.default_params == FULL_BODY["default_params"]
    assert (agent.max_tool_steps, agent.history_max_messages, agent.history_max_tokens) == (3, 40, 8000)


def test_create_with_only_slug_and_backend_takes_the_defaults(stack, tenant):
    body = create(stack, tenant, slug="minimal")
    assert {key: value for key, value in body.items() if key not in ("created", "updated")} == {
        "id": "minimal",
        "object": "agent",
        "name": "minimal",
        "backend": "echo",
        "backend_config": {},
        "system_prompt": "",
        "default_params": {},
        "tools": [],
        "max_tool_steps": 5,
        "history_max_messages": None,
        "history_max_tokens": None,
        "enabled": True,
    }


def test_null_default_params_are_dropped(stack, tenant):
    body = create(stack, tenant, slug="nulls", default_params={"temperature": None, "seed": 7})
    assert body["default_params"] == {"seed": 7}


def test_server_tools_are_validated_and_shown(stack, tenant):
    body = create(stack, tenant, slug="tooled", tools=[{"type": "calculator"}, {"type": "current_time"}])
    assert [tool["type"] for tool in body["tools"]] == ["calculator", "current_time"]
    stored_tools = Agent.objects.get(organization=tenant.organization, slug="tooled").tools
    assert [tool["type"] for tool in stored_tools] == ["calculator", "current_time"]


def test_get_agent(stack, tenant):
    created = create(stack, tenant, **{**FULL_BODY, "slug": "reader"})
    response = api(stack, tenant, "GET", "/agents/reader")
    assert response.status_code == 200
    assert response.json() == created


def test_list_agents_shows_enabled_and_disabled_agents_of_the_organization_only(stack, tenant, other_tenant):
    # given
    create(stack, tenant, slug="zeta")
    create(stack, tenant, slug="alpha", enabled=False)
    create(stack, other_tenant, slug="foreign")
    # when
    response = api(stack, tenant, "GET", "/agents")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [(agent["id"], agent["enabled"]) for agent in body["data"]] == [
        ("alpha", False),
        ("echo", True),
        ("zeta", True),
    ]
    assert all(agent["object"] == "agent" for agent in body["data"])


# --- update and delete ------------------------------------------------------------------------


def test_patch_changes_only_the_fields_it_names(stack, tenant):
    # given
    created = create(stack, tenant, **{**FULL_BODY, "slug": "patched"})
    # when
    response = api(
        stack,
        tenant,
        "PATCH",
        "/agents/patched",
        json={"system_prompt": "Be brief.", "history_max_messages": None, "max_tool_steps": 20},
    )
    # then
    assert response.status_code == 200
    body = response.json()
    expected = {**created, "system_prompt": "Be brief.", "history_max_messages": None, "max_tool_steps": 20}
    assert {k: v for k, v in body.items() if k != "updated"} == {
        k: v for k, v in expected.items() if k != "updated"
    }
    assert body["updated"] >= created["updated"]
    agent = Agent.objects.get(organization=tenant.organization, slug="patched")
    assert (agent.system_prompt, agent.history_max_messages, agent.max_tool_steps) == ("Be brief.", None, 20)
    assert agent.name == "Support desk"
    assert agent.default_params == FULL_BODY["default_params"]
    assert api(stack, tenant, "GET", "/agents/patched").json() == body


def test_patch_replaces_the_backend_config_as_a_whole(stack, tenant):
    create(stack, tenant, slug="configured", backend_config={"delay_seconds": 0, "chunk_delay_seconds": 0})
    response = api(
        stack, tenant, "PATCH", "/agents/configured", json={"backend_config": {"pause_seconds": 1}}
    )
    assert response.status_code == 200
    assert response.json()["backend_config"] == {"pause_seconds": 1}
    assert Agent.objects.get(organization=tenant.organization, slug="configured").backend_config == {
        "pause_seconds": 1
    }


def test_an_agent_sent_back_as_read_can_be_patched(stack, tenant):
    # Clients GET, edit and send the whole object back: its read-only fields are ignored.
    created = create(stack, tenant, **{**FULL_BODY, "slug": "roundtrip"})
    response = api(
        stack, tenant, "PATCH", "/agents/roundtrip", json={**created, "name": "Renamed", "created": 0}
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Renamed"
    assert response.json()["created"] == created["created"]


def test_patch_can_rename_the_slug(stack, tenant):
    create(stack, tenant, slug="old-name")
    response = api(stack, tenant, "PATCH", "/agents/old-name", json={"slug": "new-name"})
    assert response.status_code == 200
    assert response.json()["id"] == "new-name"
    assert api(stack, tenant, "GET", "/agents/old-name").status_code == 404
    assert api(stack, tenant, "GET", "/agents/new-name").status_code == 200


def test_empty_patch_changes_nothing(stack, tenant):
    create(stack, tenant, slug="still")
    before = stored(tenant, "still")
    response = api(stack, tenant, "PATCH", "/agents/still", json={})
    assert response.status_code == 200
    assert {k: v for k, v in stored(tenant, "still").items() if k != "updated"} == {
        k: v for k, v in before.items() if k != "updated"
    }


def test_delete_agent_removes_it_and_keeps_its_sessions(stack, tenant):
    # given an agent with a session
    create(stack, tenant, slug="doomed")
    assert chat(stack, tenant, "doomed", session_id="kept-1").status_code == 200
    # when
    response = api(stack, tenant, "DELETE", "/agents/doomed")
    # then
    assert response.status_code == 200
    assert response.json() == {"id": "doomed", "object": "agent.deleted", "deleted": True}
    assert agent_slugs(tenant) == ["echo"]
    session = Session.objects.get(organization=tenant.organization, external_id="kept-1")
    assert session.agent_id is None
    assert api(stack, tenant, "GET", "/agents/doomed").status_code == 404
    assert api(stack, tenant, "DELETE", "/agents/doomed").status_code == 404
    assert chat(stack, tenant, "doomed").json()["error"]["code"] == "model_not_found"


# --- validation -------------------------------------------------------------------------------


def test_unknown_backend_config_key_is_refused_by_name(stack, tenant):
    response = api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={"slug": "typo", "backend": "echo", "backend_config": {"delay_seconds": 0, "dealy_seconds": 1}},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["param"] == "backend_config.dealy_seconds"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["detail"] == [
        {"loc": ["body", "backend_config", "dealy_seconds"], "msg": "Unknown setting.", "type": "invalid"}
    ]
    assert agent_slugs(tenant) == ["echo"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"backend": "echo"}, "slug"),
        ({"slug": ""}, "slug"),
        ({"slug": "has space"}, "slug"),
        ({"slug": "echo:session"}, "slug"),
        ({"slug": "a" * 65}, "slug"),
        ({"slug": 42}, "slug"),
        ({"slug": "ok", "backend": None}, "backend"),
        ({"slug": "ok", "backend": "gpt-4o"}, "backend"),
        ({"slug": "ok", "name": ""}, "name"),
        ({"slug": "ok", "name": 7}, "name"),
        ({"slug": "ok", "backend_config": []}, "backend_config"),
        ({"slug": "ok", "backend_config": {"delay_seconds": -1}}, "backend_config.delay_seconds"),
        ({"slug": "ok", "system_prompt": ["no"]}, "system_prompt"),
        ({"slug": "ok", "default_params": []}, "default_params"),
        ({"slug": "ok", "default_params": {"temperature": 3}}, "default_params.temperature"),
        ({"slug": "ok", "default_params": {"temperature": "0.5"}}, "default_params.temperature"),
        ({"slug": "ok", "default_params": {"model": "gpt-4o"}}, "default_params.model"),
        ({"slug": "ok", "default_params": {"stream": True}}, "default_params.stream"),
        ({"slug": "ok", "default_params": {"messages": []}}, "default_params.messages"),
        ({"slug": "ok", "default_params": {"stop": [1]}}, "default_params.stop"),
        ({"slug": "ok", "default_params": {"n": 0}}, "default_params.n"),
        ({"slug": "ok", "default_params": {"seed": 1.5}}, "default_params.seed"),
        (
            {"slug": "ok", "default_params": {"response_format": {"type": "xml"}}},
            "default_params.response_format.type",
        ),
        ({"slug": "ok", "default_params": {"tool_choice": "sometimes"}}, "default_params.tool_choice"),
        ({"slug": "ok", "default_params": {"logit_bias": {"abc": 1}}}, "default_params.logit_bias.abc"),
        ({"slug": "ok", "default_params": {"top_logprobs": 2}}, "default_params.top_logprobs"),
        ({"slug": "ok", "tools": {}}, "tools"),
        ({"slug": "ok", "tools": ["calculator"]}, "tools[0]"),
        ({"slug": "ok", "tools": [{"type": "calculator"}, {"type": "shell"}]}, "tools[1].type"),
        ({"slug": "ok", "max_tool_steps": 0}, "max_tool_steps"),
        ({"slug": "ok", "max_tool_steps": 21}, "max_tool_steps"),
        ({"slug": "ok", "max_tool_steps": True}, "max_tool_steps"),
        ({"slug": "ok", "max_tool_steps": 2.5}, "max_tool_steps"),
        ({"slug": "ok", "history_max_messages": 0}, "history_max_messages"),
        ({"slug": "ok", "history_max_messages": "10"}, "history_max_messages"),
        ({"slug": "ok", "history_max_tokens": 0}, "history_max_tokens"),
        ({"slug": "ok", "history_max_tokens": 2**40}, "history_max_tokens"),
        ({"slug": "ok", "enabled": 1}, "enabled"),
        ({"slug": "ok", "enabled": "false"}, "enabled"),
        ({"slug": "ok", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_field_is_refused_naming_it(stack, tenant, body, param):
    response = api(stack, tenant, "POST", "/agents", json={"backend": "echo", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert agent_slugs(tenant) == ["echo"]


def test_missing_required_field_has_the_required_code(stack, tenant):
    response = api(stack, tenant, "POST", "/agents", json={"slug": "no-backend"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "backend"
    assert response.json()["error"]["code"] == "missing_required_parameter"


@pytest.mark.parametrize(
    ("content", "code"),
    [("{not json", "invalid_json"), ("[]", "invalid_value"), ('"agent"', "invalid_value")],
)
def test_a_body_that_is_not_a_json_object_is_refused(stack, tenant, content, code):
    response = api(
        stack, tenant, "POST", "/agents", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert agent_slugs(tenant) == ["echo"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tool_steps": 0}, "max_tool_steps"),
        ({"backend_config": {"delay_seconds": 61}}, "backend_config.delay_seconds"),
        ({"backend": "nope"}, "backend"),
        ({"slug": "bad slug"}, "slug"),
        ({"default_params": {"temperature": -1}}, "default_params.temperature"),
        ({"organization": 1}, "organization"),
    ],
)
def test_invalid_patch_is_refused_and_changes_nothing(stack, tenant, body, param):
    create(stack, tenant, **{**FULL_BODY, "slug": "steady"})
    before = stored(tenant, "steady")
    response = api(stack, tenant, "PATCH", "/agents/steady", json={"name": "Changed", **body})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert stored(tenant, "steady") == before


def test_taken_slug_is_a_conflict(stack, tenant):
    # given
    create(stack, tenant, slug="taken", system_prompt="first")
    # when
    response = api(stack, tenant, "POST", "/agents", json={"slug": "taken", "backend": "echo"})
    # then
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "message": "An agent with slug 'taken' already exists.",
            "type": "invalid_request_error",
            "param": "slug",
            "code": "agent_exists",
        }
    }
    assert Agent.objects.get(organization=tenant.organization, slug="taken").system_prompt == "first"


def test_concurrent_creates_of_one_slug_make_one_agent(stack, tenant):
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(
            pool.map(
                lambda index: api(
                    stack,
                    tenant,
                    "POST",
                    "/agents",
                    json={"slug": "racy", "backend": "echo", "name": str(index)},
                ),
                range(6),
            )
        )
    assert sorted(response.status_code for response in responses) == [201] + [409] * 5
    assert Agent.objects.filter(organization=tenant.organization, slug="racy").count() == 1


def test_renaming_onto_a_taken_slug_is_a_conflict(stack, tenant):
    create(stack, tenant, slug="first")
    create(stack, tenant, slug="second")
    before = stored(tenant, "second")
    response = api(stack, tenant, "PATCH", "/agents/second", json={"slug": "first", "name": "x"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "agent_exists"
    assert stored(tenant, "second") == before


def test_the_same_slug_in_another_organization_is_no_conflict(stack, tenant, other_tenant):
    create(stack, other_tenant, slug="shared")
    assert create(stack, tenant, slug="shared")["id"] == "shared"


# --- tenancy ----------------------------------------------------------------------------------


def test_foreign_agent_looks_exactly_like_a_missing_one(stack, tenant, other_tenant):
    # given an agent of the other organization
    create(stack, other_tenant, **{**FULL_BODY, "slug": "theirs"})
    before = stored(other_tenant, "theirs")
    # when this tenant reads, changes and deletes it, and one it does not have either
    foreign = [
        api(stack, tenant, "GET", "/agents/theirs"),
        api(stack, tenant, "PATCH", "/agents/theirs", json={"system_prompt": "pwned", "enabled": False}),
        api(stack, tenant, "DELETE", "/agents/theirs"),
    ]
    Agent.objects.filter(organization=tenant.organization, slug="theirs").delete()
    missing = [
        api(stack, tenant, "GET", "/agents/theirs"),
        api(stack, tenant, "PATCH", "/agents/theirs", json={"system_prompt": "pwned", "enabled": False}),
        api(stack, tenant, "DELETE", "/agents/theirs"),
    ]
    # then every answer is the 404 of a missing agent, and nothing changed
    expected = {
        "error": {
            "message": "No agent found with slug 'theirs'.",
            "type": "invalid_request_error",
            "param": "slug",
            "code": "agent_not_found",
        }
    }
    for response in foreign + missing:
        assert response.status_code == 404
        assert response.json() == expected
    assert [r.headers["content-type"] for r in foreign] == [r.headers["content-type"] for r in missing]
    assert stored(other_tenant, "theirs") == before
    assert "theirs" not in [agent["id"] for agent in api(stack, tenant, "GET", "/agents").json()["data"]]


def test_a_foreign_agent_of_the_same_slug_is_not_touched(stack, tenant, other_tenant):
    create(stack, other_tenant, slug="twin", system_prompt="theirs")
    create(stack, tenant, slug="twin", system_prompt="ours")
    before = stored(other_tenant, "twin")
    assert api(stack, tenant, "PATCH", "/agents/twin", json={"system_prompt": "new"}).status_code == 200
    assert api(stack, tenant, "DELETE", "/agents/twin").status_code == 200
    assert stored(other_tenant, "twin") == before


def test_organization_in_the_body_is_refused_and_changes_nothing(stack, tenant, other_tenant):
    # when this tenant tries to create an agent in the other organization
    response = api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={"slug": "planted", "backend": "echo", "organization": other_tenant.organization.pk},
    )
    by_slug = api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={"slug": "planted", "backend": "echo", "organization": other_tenant.organization.slug},
    )
    # then
    assert response.status_code == by_slug.status_code == 400
    assert response.json()["error"]["param"] == "organization"
    assert agent_slugs(tenant) == ["echo"]
    assert agent_slugs(other_tenant) == ["echo"]


def test_read_only_fields_in_the_body_are_ignored(stack, tenant, other_tenant):
    body = create(stack, tenant, slug="mine", id="their-id", created=1, updated=1, object="model")
    assert (body["id"], body["object"]) == ("mine", "agent")
    assert body["created"] > 1
    assert agent_slugs(tenant) == ["echo", "mine"]
    assert agent_slugs(other_tenant) == ["echo"]


# --- the agent at work ------------------------------------------------------------------------


def test_a_created_agent_answers_chat_and_is_listed_as_a_model(stack, tenant):
    # given
    create(stack, tenant, slug="helper", system_prompt="Be kind.", default_params={"max_tokens": 2})
    # when
    models = api(stack, tenant, "GET", "/models").json()
    answer = chat(stack, tenant, "helper", "hello there my friend")
    # then
    assert [model["id"] for model in models["data"]] == ["echo", "helper"]
    assert answer.status_code == 200, answer.text
    completion = answer.json()
    assert completion["model"] == "helper"
    # the default max_tokens applied: the answer was cut
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["choices"][0]["message"]["content"] == "You said"
    # a request's own parameter wins over the default; the system prompt was in context
    full = chat(stack, tenant, "helper", "hello", max_tokens=100).json()
    assert full["choices"][0]["message"]["content"] == "You said: hello\n(2 messages in context)"


def test_disabling_an_agent_hides_it_from_models_and_chat(stack, tenant):
    # given
    create(stack, tenant, slug="shy")
    # when
    response = api(stack, tenant, "PATCH", "/agents/shy", json={"enabled": False})
    # then
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert [model["id"] for model in api(stack, tenant, "GET", "/models").json()["data"]] == ["echo"]
    assert api(stack, tenant, "GET", "/models/shy").status_code == 404
    refused = chat(stack, tenant, "shy")
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    # and enabling it brings it back
    api(stack, tenant, "PATCH", "/agents/shy", json={"enabled": True})
    assert chat(stack, tenant, "shy").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/agents"),
        ("POST", "/agents"),
        ("GET", "/agents/echo"),
        ("PATCH", "/agents/echo"),
        ("DELETE", "/agents/echo"),
    ],
)
def test_every_endpoint_needs_a_key(stack, tenant, method, path):
    response = httpx.request(method, f"{stack.api_url}{path}", json={"slug": "x", "backend": "echo"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert agent_slugs(tenant) == ["echo"]


def test_unsupported_method_is_an_envelope(stack, tenant):
    response = api(stack, tenant, "PUT", "/agents/echo", json={})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


# --- the openai backend's secret is write-only -------------------------------------------------

CANARY = "sk-canary-123"
UPSTREAM = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}


def create_upstream_agent(stack, tenant, slug: str = "upstream") -> httpx.Response:
    return api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={"slug": slug, "backend": "openai", "backend_config": {**UPSTREAM, "api_key": CANARY}},
    )


def test_upstream_api_key_is_never_shown(stack, tenant):
    # when
    created = create_upstream_agent(stack, tenant)
    # then
    assert created.status_code == 201, created.text
    config = created.json()["backend_config"]
    assert config["base_url"] == UPSTREAM["base_url"]
    assert config["model"] == "m"
    assert "api_key" not in config
    responses = [
        created,
        api(stack, tenant, "GET", "/agents/upstream"),
        api(stack, tenant, "GET", "/agents"),
        api(stack, tenant, "PATCH", "/agents/upstream", json={"name": "Upstream"}),
        api(stack, tenant, "PATCH", "/agents/upstream", json={"backend_config": {**UPSTREAM, "model": "m2"}}),
    ]
    for response in responses:
        assert response.status_code == 200 or response.status_code == 201
        assert CANARY not in response.text
    # nor in the database in clear
    agent = Agent.objects.get(organization=tenant.organization, slug="upstream")
    assert CANARY not in json.dumps(agent.backend_config)
    assert "api_key" in agent.backend_config
    # nor in the servers' logs
    for log in stack.logs:
        assert CANARY not in log.read_text(errors="replace")


def test_patch_without_the_api_key_keeps_it(stack, tenant):
    # given
    assert create_upstream_agent(stack, tenant).status_code == 201
    sealed = Agent.objects.get(organization=tenant.organization, slug="upstream").backend_config["api_key"]
    # when the configuration changes without the key, and then something else changes
    changed = api(
        stack, tenant, "PATCH", "/agents/upstream", json={"backend_config": {**UPSTREAM, "model": "m2"}}
    )
    renamed = api(stack, tenant, "PATCH", "/agents/upstream", json={"name": "Renamed"})
    # then the sealed key is the same
    assert changed.status_code == renamed.status_code == 200, changed.text
    assert changed.json()["backend_config"]["model"] == "m2"
    agent = Agent.objects.get(organization=tenant.organization, slug="upstream")
    assert agent.backend_config["model"] == "m2"
    assert agent.backend_config["api_key"] == sealed


def test_a_new_api_key_replaces_the_old_one(stack, tenant):
    assert create_upstream_agent(stack, tenant).status_code == 201
    sealed = Agent.objects.get(organization=tenant.organization, slug="upstream").backend_config["api_key"]
    response = api(
        stack,
        tenant,
        "PATCH",
        "/agents/upstream",
        json={"backend_config": {**UPSTREAM, "api_key": "sk-other-456"}},
    )
    assert response.status_code == 200, response.text
    assert "sk-other-456" not in response.text
    stored_config = Agent.objects.get(organization=tenant.organization, slug="upstream").backend_config
    assert stored_config["api_key"] != sealed
    assert "sk-other-456" not in json.dumps(stored_config)


def test_invalid_upstream_config_is_refused_without_echoing_the_key(stack, tenant):
    response = api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={
            "slug": "broken",
            "backend": "openai",
            "backend_config": {"base_url": "not a url", "api_key": CANARY},
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] in ("backend_config.base_url", "backend_config.model")
    assert CANARY not in response.text
    assert agent_slugs(tenant) == ["echo"]


def test_changing_the_backend_validates_the_new_config_from_scratch(stack, tenant):
    # given an echo agent with echo's configuration
    create(stack, tenant, slug="switch", backend_config={"delay_seconds": 0})
    before = stored(tenant, "switch")
    # when it becomes an openai agent without a configuration, then with echo's
    bare = api(stack, tenant, "PATCH", "/agents/switch", json={"backend": "openai"})
    echoish = api(
        stack,
        tenant,
        "PATCH",
        "/agents/switch",
        json={"backend": "openai", "backend_config": {"delay_seconds": 0}},
    )
    # then both are refused naming the field, and nothing changed
    assert bare.status_code == echoish.status_code == 400
    assert bare.json()["error"]["param"] == "backend_config.base_url"
    assert echoish.json()["error"]["param"] == "backend_config.delay_seconds"
    assert stored(tenant, "switch") == before
    # and with a full configuration it switches
    switched = api(
        stack,
        tenant,
        "PATCH",
        "/agents/switch",
        json={"backend": "openai", "backend_config": {**UPSTREAM, "api_key": CANARY}},
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["backend"] == "openai"
    assert CANARY not in switched.text
    # and back to echo: the stored openai configuration, key included, is dropped
    back = api(stack, tenant, "PATCH", "/agents/switch", json={"backend": "echo"})
    assert back.status_code == 200, back.text
    assert back.json()["backend_config"] == {}
    assert Agent.objects.get(organization=tenant.organization, slug="switch").backend_config == {}


TOOL_SECRET = "whsec-canary-789"
HTTP_TOOL = {"type": "http", "name": "lookup", "url": "http://127.0.0.1:9/lookup"}


def test_http_tool_signing_secret_is_write_only(stack, tenant):
    # when
    created = api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={"slug": "hooked", "backend": "echo", "tools": [{**HTTP_TOOL, "secret": TOOL_SECRET}]},
    )
    # then it is shown nowhere and stored sealed
    assert created.status_code == 201, created.text
    assert created.json()["tools"][0]["name"] == "lookup"
    sealed = Agent.objects.get(organization=tenant.organization, slug="hooked").tools[0]["secret"]
    assert TOOL_SECRET not in json.dumps(sealed)
    # and an update of the tool without its secret keeps it
    changed = api(
        stack, tenant, "PATCH", "/agents/hooked", json={"tools": [{**HTTP_TOOL, "description": "Looks up."}]}
    )
    assert changed.status_code == 200, changed.text
    for response in [
        created,
        changed,
        api(stack, tenant, "GET", "/agents/hooked"),
        api(stack, tenant, "GET", "/agents"),
    ]:
        assert TOOL_SECRET not in response.text
    tool = Agent.objects.get(organization=tenant.organization, slug="hooked").tools[0]
    assert (tool["description"], tool["secret"]) == ("Looks up.", sealed)


# --- what an agent may name and call: offered key variables only, no credentials in URLs --------

NOT_OFFERED = (
    "is not an environment variable offered for upstream keys (only those listed in "
    "PARLEY_UPSTREAM_KEY_ENVS and those named PARLEY_UPSTREAM_KEY_* are)."
)


def refused_field(response: httpx.Response, param: str, message: str) -> None:
    """The exact 400 of a validation error about one field (`param` as in `tools[0].url`)."""
    loc = [
        int(part) if part.isdigit() else part for part in param.replace("]", "").replace("[", ".").split(".")
    ]
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": {
            "message": f"Invalid value for '{param}': {message}",
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_value",
        },
        "detail": [{"loc": ["body", *loc], "msg": message, "type": "invalid"}],
    }


@pytest.mark.parametrize(
    "variable",
    [
        "SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "PATH",
        "PARLEY_SECRETS_KEY",
        "PARLEY_JWT_SIGNING_KEY",
        "PARLEY_UPSTREAM_KEY_ENVS",  # the setting itself, although it has the prefix
        "PARLEY_UPSTREAM_KEY_",  # the prefix alone
        "parley_upstream_key_tests",  # names are case-sensitive
    ],
)
def test_api_key_env_naming_a_variable_the_operator_did_not_offer_is_refused(stack, tenant, variable):
    # when
    response = api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={"slug": "thief", "backend": "openai", "backend_config": {**UPSTREAM, "api_key_env": variable}},
    )
    # then
    refused_field(response, "backend_config.api_key_env", f"{variable} {NOT_OFFERED}")
    assert agent_slugs(tenant) == ["echo"]


def test_api_key_env_naming_a_variable_not_offered_is_refused_on_update_too(stack, tenant):
    # given
    assert create_upstream_agent(stack, tenant).status_code == 201
    before = stored(tenant, "upstream")
    # when
    response = api(
        stack,
        tenant,
        "PATCH",
        "/agents/upstream",
        json={"backend_config": {**UPSTREAM, "api_key_env": "SECRET_KEY"}},
    )
    # then
    refused_field(response, "backend_config.api_key_env", f"SECRET_KEY {NOT_OFFERED}")
    assert stored(tenant, "upstream") == before


@pytest.mark.parametrize("offered", [UPSTREAM_KEY_BY_PREFIX, UPSTREAM_KEY_LISTED], ids=["prefix", "listed"])
def test_api_key_env_naming_an_offered_variable_sends_its_value(stack, tenant, fake_upstream, offered):
    # given an agent whose key is a variable the operator offered
    variable, value = offered
    created = api(
        stack,
        tenant,
        "POST",
        "/agents",
        json={
            "slug": "offered",
            "backend": "openai",
            "backend_config": {
                "base_url": f"{fake_upstream.url}/v1",
                "model": "fake-echo",
                "api_key_env": variable,
            },
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["backend_config"] == {
        "base_url": f"{fake_upstream.url}/v1",
        "model": "fake-echo",
        "api_key_env": variable,
        "timeout": 60.0,
        "max_retries": 2,
        "api_key_set": False,
    }
    # when
    word = f"offered-{uuid.uuid4().hex[:8]}"
    answer = chat(stack, tenant, "offered", word)
    # then the upstream got the variable's value as the key
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == f"upstream says: {word}"
    [received] = fake_upstream.received(word)
    assert received.headers["authorization"] == f"Bearer {value}"
    assert value not in answer.text


def test_the_admin_refuses_an_api_key_env_that_is_not_offered(admin_client):
    # given an organization, and its echo agent opened in the admin
    organization = organization_create(slug=f"admin-env-{uuid.uuid4().hex[:8]}")
    agent = Agent.objects.get(organization=organization, slug="echo")
    form = {
        "organization": organization.pk,
        "slug": "echo",
        "name": "Echo",
        "backend": "openai",
        "backend_config": json.dumps({**UPSTREAM, "api_key_env": "SECRET_KEY"}),
        "system_prompt": "",
        "default_params": "{}",
        "tools": "[]",
        "max_tool_steps": 5,
        "enabled": "on",
    }
    # when the operator names SECRET_KEY
    refused = admin_client.post(f"/admin/agents/agent/{agent.pk}/change/", form)
    # then the form says why, the same as the API, and nothing changed
    assert refused.status_code == 200
    assert f"api_key_env: SECRET_KEY {NOT_OFFERED}" in refused.content.decode()
    assert (Agent.objects.get(pk=agent.pk).backend, Agent.objects.get(pk=agent.pk).backend_config) == (
        "echo",
        {},
    )


CREDENTIALS_REFUSED = (
    "Refusing a URL with credentials in it (user:password@127.0.0.1): give secrets in the settings "
    "made for them (api_key, secret), never in a URL."
)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "backend": "openai",
                "backend_config": {**UPSTREAM, "base_url": "http://user:hunter2@127.0.0.1:9/v1"},
            },
            "backend_config.base_url",
        ),
        (
            {
                "backend": "openai",
                "backend_config": {**UPSTREAM, "base_url": "http://hunter2@127.0.0.1:9/v1"},
            },
            "backend_config.base_url",
        ),
        (
            {
                "backend": "webhook",
                "backend_config": {"url": "https://user:hunter2@127.0.0.1:9/hook", "secret": WEBHOOK_SECRET},
            },
            "backend_config.url",
        ),
        (
            {
                "backend": "echo",
                "tools": [
                    {**HTTP_TOOL, "url": "http://user:hunter2@127.0.0.1:9/lookup", "secret": TOOL_SECRET}
                ],
            },
            "tools[0].url",
        ),
    ],
    ids=["openai", "openai-user-only", "webhook", "http-tool"],
)
def test_a_url_with_credentials_is_refused_naming_the_field(stack, tenant, body, param):
    # when
    response = api(stack, tenant, "POST", "/agents", json={"slug": "creds", **body})
    # then
    refused_field(response, param, CREDENTIALS_REFUSED)
    assert "hunter2" not in response.text
    assert agent_slugs(tenant) == ["echo"]
