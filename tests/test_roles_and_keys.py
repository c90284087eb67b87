"""Roles, scopes and the API key lifecycle: one permission table for every endpoint, keys that
never hold more than their maker, members managed by owners, and foreign objects that look
missing."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from django.urls import URLPattern, get_resolver
from django.utils import timezone

from accounts.api.shapes import ApiKeySerializer
from accounts.models import ALL_SCOPES, ApiKey, AuditEvent, Membership
from accounts.permissions import (
    ADMIN,
    AUTHENTICATED,
    CHAT,
    ENDPOINT_PERMISSIONS,
    MEMBERS,
    PUBLIC,
    SESSIONS_READ,
    SESSIONS_WRITE,
    EndpointPermission,
    principal_can,
    principal_permissions,
)
from accounts.principal import Principal
from accounts.services import (
    api_key_create,
    api_key_issue,
    membership_add,
    membership_change_role,
    membership_remove,
)
from agents.api.shapes import AgentSerializer
from agents.models import Agent
from config.errors import Conflict, PermissionDenied
from config.middleware import is_api_path
from sessions.api.usage import DEFAULT_DAYS as USAGE_DEFAULT_DAYS
from sessions.models import Session
from tests.conftest import make_key, make_person

# --- helpers ----------------------------------------------------------------------------------


def call(stack, key: str | None, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.request(method, f"{stack.url}{path}", headers=headers, timeout=30, **kwargs)


def chat(stack, key: str, **extra) -> httpx.Response:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}], **extra}
    return call(stack, key, "POST", "/v1/chat/completions", json=body)


def key_rows(tenant) -> list[tuple]:
    return list(
        ApiKey.objects.filter(organization=tenant.organization)
        .order_by("pk")
        .values_list("pk", "name", "scopes", "revoked_at", "expires_at")
    )


def assert_refused(response: httpx.Response, permission: str) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "permission_denied")
    assert f"'{permission}' permission" in error["message"]


def as_user(person) -> Principal:
    return Principal(organization=person.organization, user=person.user, role=person.role)


# --- the table --------------------------------------------------------------------------------


def _url_patterns() -> list[URLPattern]:
    # The includes (the admin, allauth) are browser pages, signed in with Django's session.
    return [pattern for pattern in get_resolver().url_patterns if isinstance(pattern, URLPattern)]


def _concrete_path(pattern: URLPattern) -> str:
    route = str(pattern.pattern)
    return "/" + re.sub(
        r"<(?:(\w+):)?\w+>", lambda match: "1" if match.group(1) == "int" else "x-missing", route
    )


def _table_cases() -> list[tuple[str, str, str, str]]:
    cases = []
    for pattern in _url_patterns():
        for method, permission in ENDPOINT_PERMISSIONS.get(pattern.name or "", {}).items():
            cases.append((pattern.name, _concrete_path(pattern), method, permission))
    return cases


TABLE_CASES = _table_cases()
GUARDED = [case for case in TABLE_CASES if case[3] not in (PUBLIC, AUTHENTICATED)]
OPEN = [case for case in TABLE_CASES if case[3] == PUBLIC]


def test_every_api_endpoint_is_in_the_permission_table():
    # (Browser pages, such as the console's, sign in with Django's session, not a bearer.)
    api_patterns = [pattern for pattern in _url_patterns() if is_api_path(_concrete_path(pattern))]
    assert len(api_patterns) >= 20
    unlisted = [str(pattern.pattern) for pattern in api_patterns if pattern.name not in ENDPOINT_PERMISSIONS]
    assert unlisted == []


def test_every_drf_view_checks_the_table():
    for pattern in _url_patterns():
        view_class = getattr(pattern.callback, "cls", None)
        if view_class is None:
            continue  # plain Django views: the async ones call require_permission (tested below)
        rules = ENDPOINT_PERMISSIONS[pattern.name]
        public = set(rules.values()) == {PUBLIC}
        assert public or EndpointPermission in view_class.permission_classes, pattern.name


def test_roles_hold_their_permissions():
    def person(role: str) -> Principal:
        return Principal(organization=None, user=None, role=role)  # type: ignore[arg-type]

    member = {CHAT, SESSIONS_READ, SESSIONS_WRITE}
    assert principal_permissions(person("member")) == member
    assert principal_permissions(person("admin")) == member | {ADMIN}
    assert principal_permissions(person("owner")) == member | {ADMIN, MEMBERS}
    assert principal_permissions(person("stranger")) == frozenset()


def test_a_key_holds_its_scopes_and_never_members(tenant):
    # given a key whose stored scopes were tampered with to include "members"
    issued = api_key_create(organization=tenant.organization, name="odd", scopes=["chat", "members", "root"])
    principal = Principal(organization=tenant.organization, api_key=issued.api_key)
    # then only real scopes count
    assert principal_permissions(principal) == {CHAT}
    assert principal_can(principal, CHAT)
    assert not principal_can(principal, MEMBERS)
    assert not principal_can(principal, ADMIN)
    assert principal_can(principal, AUTHENTICATED)
    assert principal_can(principal, PUBLIC)


@pytest.mark.parametrize(("name", "path", "method", "permission"), GUARDED)
def test_each_endpoint_refuses_a_caller_without_its_permission(stack, tenant, name, path, method, permission):
    # given a key holding every scope but the one the endpoint needs (no key holds `members`)
    others = [scope for scope in ALL_SCOPES if scope != permission]
    key = make_key(tenant, others)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    # when
    response = call(stack, key, method, path, json=body)
    # then
    assert_refused(response, permission)


def _required(*fields: str) -> dict:
    """The 400 for a body missing these fields."""
    detail = [
        {"loc": ["body", field], "msg": "This field is required.", "type": "required"} for field in fields
    ]
    return {
        "error": {
            "message": f"Invalid value for '{fields[0]}': This field is required.",
            "type": "invalid_request_error",
            "param": fields[0],
            "code": "missing_required_parameter",
        },
        "detail": detail,
    }


def _error(message: str, param: str, code: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


_AUTOMATION_DEFAULTS = {
    "object": "automation_settings",
    "auto_create_sessions": True,
    "session_idle_ttl": None,
    "history_max_messages": None,
    "history_max_tokens": None,
    "auto_title": False,
    "default_agent": None,
}
_NO_SESSION = _error("No session found with id 'x-missing'.", "session_id", "session_not_found")
_NO_TURN = _error("No turn found with id 'x-missing'.", "turn_id", "turn_not_found")
_NO_AGENT = _error("No agent found with slug 'x-missing'.", "slug", "agent_not_found")
_NO_KEY = _error("No API key found with id 'x-missing'.", "id", "api_key_not_found")
# What a key holding just the endpoint's permission gets for the table's request (an empty body,
# ids that name nothing), where that does not depend on the tenant's data.
_ADMITTED_ANSWERS = {
    ("chat-completions", "POST"): (400, _required("messages")),
    ("chat-completions-api-v1", "POST"): (400, _required("messages")),
    ("chat-completions-api-ai", "POST"): (400, _required("messages")),
    ("nlx-chat-completions", "POST"): (
        400,
        _error(
            "The channel 'x-missing' must end in a language code, as in 'web-en-US'.",
            "channel",
            "invalid_request",
        ),
    ),
    ("model-detail", "GET"): (
        404,
        _error(
            "The model 'x-missing' does not exist or you do not have access to it.",
            "model",
            "model_not_found",
        ),
    ),
    ("agents", "POST"): (400, _required("slug", "backend")),
    ("agent-detail", "GET"): (404, _NO_AGENT),
    ("agent-detail", "PATCH"): (404, _NO_AGENT),
    ("agent-detail", "DELETE"): (404, _NO_AGENT),
    ("sessions", "GET"): (
        200,
        {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False},
    ),
    ("session-detail", "GET"): (404, _NO_SESSION),
    ("session-detail", "PATCH"): (404, _NO_SESSION),
    ("session-detail", "DELETE"): (404, _NO_SESSION),
    ("session-export", "GET"): (404, _NO_SESSION),
    ("session-fork", "POST"): (404, _NO_SESSION),
    ("automation-settings", "GET"): (200, _AUTOMATION_DEFAULTS),
    ("automation-settings", "PUT"): (200, _AUTOMATION_DEFAULTS),
    ("turn-detail", "GET"): (404, _NO_TURN),
    ("turn-events", "GET"): (404, _NO_TURN),
    ("turn-cancel", "POST"): (404, _NO_TURN),
    ("api-keys", "POST"): (400, _required("name")),
    ("api-key-detail", "GET"): (404, _NO_KEY),
    ("api-key-detail", "DELETE"): (404, _NO_KEY),
    ("members", "GET"): (200, {"object": "list", "data": []}),
    ("member-detail", "GET"): (
        404,
        _error("No member found with id 'x-missing'.", "user_id", "member_not_found"),
    ),
}


def _admitted_answer(name: str, method: str, tenant) -> tuple[int, dict]:
    """The answer a key holding just the endpoint's permission gets (read after the request)."""
    if (name, method) in _ADMITTED_ANSWERS:
        return _ADMITTED_ANSWERS[(name, method)]
    organization = tenant.organization
    echo = organization.agents.get(slug="echo")
    if (name, method) == ("models", "GET"):
        model = {
            "id": "echo",
            "object": "model",
            "created": int(echo.created.timestamp()),
            "owned_by": organization.slug,
        }
        return 200, {"object": "list", "data": [model]}
    if (name, method) == ("agents", "GET"):
        return 200, {"object": "list", "data": [AgentSerializer(echo).data]}
    if (name, method) == ("sessions", "POST"):
        session = Session.objects.get(organization=organization)
        created = {
            "id": session.external_id,
            "object": "session",
            "agent": None,
            "title": "",
            "metadata": {},
            "user": None,
            "message_count": 0,
            "created": int(session.created.timestamp()),
            "updated": int(session.updated.timestamp()),
            "messages": [],
        }
        return 201, created
    if (name, method) == ("api-keys", "GET"):
        keys = ApiKey.objects.filter(organization=organization).order_by("-pk")
        return 200, {"object": "list", "data": ApiKeySerializer(keys, many=True).data}
    if (name, method) == ("usage", "GET"):
        today = timezone.now().date()
        usage = {
            "object": "list",
            "group_by": "day",
            "start": (today - timedelta(days=USAGE_DEFAULT_DAYS - 1)).isoformat(),
            "end": today.isoformat(),
            "data": [],
            "totals": {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }
        return 200, usage
    raise AssertionError(f"No expected answer for {method} {name}: add it to this test.")


@pytest.mark.parametrize(
    ("name", "path", "method", "permission"), [case for case in GUARDED if case[3] != MEMBERS]
)
def test_each_endpoint_admits_a_key_with_just_its_permission(stack, tenant, name, path, method, permission):
    key = make_key(tenant, [permission])
    body = {} if method in ("POST", "PUT", "PATCH") else None
    response = call(stack, key, method, path, json=body)
    # the request may be wrong in other ways (an empty body, a missing object): the endpoint answers it
    assert (response.status_code, response.json()) == _admitted_answer(name, method, tenant)


# Each public endpoint, asked what it is for without credentials: method, body, status, answer.
PUBLIC_REQUESTS = {
    "auth-token": ("POST", {}, 400, _required("username", "password")),
    "auth-token-refresh": ("POST", {}, 400, _required("refresh")),
    "auth-token-verify": ("POST", {}, 400, _required("token")),
    # It takes the browser session instead of a bearer: without one, its own 401.
    "auth-oidc-token": (
        "POST",
        None,
        401,
        {
            "error": {
                "message": "Sign in in the browser first (/accounts/login/); this endpoint takes the session "
                "cookie and the CSRF token.",
                "type": "authentication_error",
                "param": None,
                "code": "not_signed_in",
            }
        },
    ),
    "healthz": ("GET", None, 200, {"status": "ok"}),
    "readyz": ("GET", None, 200, {"status": "ok", "checks": {"database": "ok"}}),
}


@pytest.mark.parametrize(("name", "path", "method", "permission"), OPEN)
def test_public_endpoints_need_no_credentials(stack, name, path, method, permission):
    if name == "openapi-schema":
        response = call(stack, None, "GET", path)
        assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
        schema = response.json()
        assert (schema["openapi"], schema["info"]["title"]) == ("3.1.0", "Parley API")
        assert "/v1/chat/completions" in schema["paths"]
        return
    if name == "docs":
        response = call(stack, None, "GET", path)
        assert (response.status_code, response.headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert "<title>Parley API</title>" in response.text
        return
    verb, body, status, answer = PUBLIC_REQUESTS[name]
    if name == "readyz" and stack.mode == "production":
        answer = {"status": "ok", "checks": {"database": "ok", "redis": "ok", "broker": "ok"}}
    response = call(stack, None, verb, path, json=body)
    assert (response.status_code, response.json()) == (status, answer)


def test_a_request_without_credentials_is_401_not_403(stack, tenant):
    response = call(stack, None, "GET", "/v1/api-keys")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


# --- scope matrix -----------------------------------------------------------------------------


def test_a_chat_only_key_chats_but_manages_nothing(stack, tenant):
    # given
    key = make_key(tenant, [CHAT])
    # when / then it chats and sees the models and agents it chats with
    answer = chat(stack, key, session_id="chatty")
    assert answer.status_code == 200, answer.text
    assert call(stack, key, "GET", "/v1/models").status_code == 200
    assert call(stack, key, "GET", "/v1/agents").status_code == 200
    # and is refused sessions, agent changes and keys, naming what it lacks
    assert_refused(call(stack, key, "GET", "/v1/sessions"), SESSIONS_READ)
    assert_refused(call(stack, key, "GET", "/v1/sessions/chatty"), SESSIONS_READ)
    assert_refused(call(stack, key, "DELETE", "/v1/sessions/chatty"), SESSIONS_WRITE)
    assert_refused(call(stack, key, "POST", "/v1/agents", json={"slug": "mine", "backend": "echo"}), ADMIN)
    assert_refused(call(stack, key, "PATCH", "/v1/agents/echo", json={"name": "Mine"}), ADMIN)
    assert_refused(call(stack, key, "GET", "/v1/api-keys"), ADMIN)
    assert_refused(call(stack, key, "POST", "/v1/api-keys", json={"name": "more"}), ADMIN)
    # and nothing changed
    assert Session.objects.filter(organization=tenant.organization, external_id="chatty").exists()
    assert list(Agent.objects.filter(organization=tenant.organization).values_list("slug", "name")) == [
        ("echo", "Echo")
    ]
    assert ApiKey.objects.filter(organization=tenant.organization).count() == 2


def test_a_sessions_read_key_lists_but_does_not_delete(stack, tenant):
    # given a session
    assert chat(stack, tenant.key, session_id="kept").status_code == 200
    key = make_key(tenant, [SESSIONS_READ])
    # when / then
    listed = call(stack, key, "GET", "/v1/sessions")
    assert listed.status_code == 200
    assert [session["id"] for session in listed.json()["data"]] == ["kept"]
    assert call(stack, key, "GET", "/v1/sessions/kept").status_code == 200
    assert_refused(call(stack, key, "DELETE", "/v1/sessions/kept"), SESSIONS_WRITE)
    assert_refused(chat(stack, key, session_id="kept"), CHAT)
    assert Session.objects.filter(organization=tenant.organization, external_id="kept").count() == 1


def test_an_admin_key_manages_agents_and_keys_but_does_not_chat(stack, tenant):
    key = make_key(tenant, [ADMIN])
    created = call(stack, key, "POST", "/v1/agents", json={"slug": "desk", "backend": "echo"})
    assert created.status_code == 201, created.text
    assert call(stack, key, "PATCH", "/v1/agents/desk", json={"name": "Desk"}).status_code == 200
    minted = call(stack, key, "POST", "/v1/api-keys", json={"name": "ops"})
    assert minted.status_code == 201, minted.text
    assert minted.json()["scopes"] == [ADMIN]
    assert call(stack, key, "DELETE", f"/v1/api-keys/{minted.json()['id']}").status_code == 200
    assert call(stack, key, "DELETE", "/v1/agents/desk").status_code == 200
    assert_refused(chat(stack, key), CHAT)
    assert_refused(call(stack, key, "GET", "/v1/sessions"), SESSIONS_READ)


# --- creating keys ----------------------------------------------------------------------------


def test_creating_a_key_shows_it_once_and_stores_only_its_hash(stack, tenant):
    # when
    before = int(time.time())
    response = call(stack, tenant.key, "POST", "/v1/api-keys", json={"name": "ci"})
    # then
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    secret = body.pop("key")
    row = ApiKey.objects.get(pk=body["id"])
    assert secret.startswith(row.prefix) and secret.startswith("sk-parley-")
    assert before <= body.pop("created") <= int(time.time()) + 1
    assert body == {
        "id": row.pk,
        "object": "api_key",
        "name": "ci",
        "prefix": row.prefix,
        "last_four": secret[-4:],
        "redacted_value": f"{row.prefix}…{secret[-4:]}",
        "scopes": ALL_SCOPES,
        "last_used_at": None,
        "expires_at": None,
        "revoked_at": None,
        "created_by": None,
        "limits": {"requests_per_minute": None, "tokens_per_day": None, "concurrent_turns": None},
    }
    assert (row.organization_id, row.scopes, row.created_by_id) == (tenant.organization.pk, ALL_SCOPES, None)
    assert secret not in (row.prefix + row.secret_hash + row.last_four + row.name)
    # and the key works
    assert chat(stack, secret).status_code == 200
    # and is shown nowhere again
    shown = [
        call(stack, tenant.key, "GET", "/v1/api-keys"),
        call(stack, tenant.key, "GET", f"/v1/api-keys/{row.pk}"),
        call(stack, tenant.key, "DELETE", f"/v1/api-keys/{row.pk}"),
    ]
    for later in shown:
        assert later.status_code == 200
        assert secret not in later.text
        assert secret[len(row.prefix) :] not in later.text
        assert row.secret_hash not in later.text
        assert "key" not in later.json() and "secret_hash" not in later.text


def test_a_key_is_created_with_scopes_expiry_and_limits(stack, tenant):
    # when
    response = call(
        stack,
        tenant.key,
        "POST",
        "/v1/api-keys",
        json={
            "name": "limited",
            "scopes": ["sessions:read", "chat", "chat"],
            "expires_in_days": 7,
            "requests_per_minute": 60,
            "tokens_per_day": 10_000,
            "concurrent_turns": 2,
        },
    )
    # then
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["scopes"] == ["chat", "sessions:read"]
    assert body["limits"] == {"requests_per_minute": 60, "tokens_per_day": 10_000, "concurrent_turns": 2}
    expected_expiry = time.time() + 7 * 86400
    assert abs(body["expires_at"] - expected_expiry) < 60
    row = ApiKey.objects.get(pk=body["id"])
    assert (row.scopes, row.requests_per_minute, row.tokens_per_day, row.concurrent_turns) == (
        ["chat", "sessions:read"],
        60,
        10_000,
        2,
    )
    # and an explicit expiry is kept as given
    at = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    dated = call(
        stack, tenant.key, "POST", "/v1/api-keys", json={"name": "dated", "expires_at": at.isoformat()}
    )
    assert dated.status_code == 201, dated.text
    assert dated.json()["expires_at"] == int(at.timestamp())


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
        ({"name": "k", "scopes": ["chat", "root"]}, "scopes[1]"),
        ({"name": "k", "scopes": ["members"]}, "scopes[0]"),
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": "chat"}, "scopes"),
        ({"name": "k", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "k", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "k", "expires_in_days": 0}, "expires_in_days"),
        ({"name": "k", "expires_in_days": 1, "expires_at": "2999-01-01T00:00:00Z"}, "expires_in_days"),
        ({"name": "k", "requests_per_minute": 0}, "requests_per_minute"),
        ({"name": "k", "tokens_per_day": "100"}, "tokens_per_day"),
        ({"name": "k", "scope": ["chat"]}, "scope"),
    ],
)
def test_invalid_key_requests_are_refused_by_field(stack, tenant, body, param):
    before = key_rows(tenant)
    response = call(stack, tenant.key, "POST", "/v1/api-keys", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert key_rows(tenant) == before


@pytest.mark.parametrize(
    "field", ["organization", "organization_id", "owner", "owner_id", "created_by", "created_by_id", "user"]
)
def test_owner_and_organization_in_the_body_are_refused(stack, tenant, other_tenant, org_owner, field):
    # given values that point at another tenant and another person
    value = {"organization": other_tenant.organization.slug}.get(field, other_tenant.organization.pk)
    if field.startswith(("owner", "created_by", "user")):
        value = org_owner.user.pk
    before, before_other = key_rows(tenant), key_rows(other_tenant)
    # when
    response = call(stack, tenant.key, "POST", "/v1/api-keys", json={"name": "planted", field: value})
    # then
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field
    assert "Set by the server" in error["message"]
    assert key_rows(tenant) == before
    assert key_rows(other_tenant) == before_other


def test_a_key_cannot_grant_a_scope_it_does_not_hold(stack, tenant):
    # given a key that may manage keys and read sessions, nothing else
    key = make_key(tenant, [ADMIN, SESSIONS_READ])
    before = key_rows(tenant)
    # when it asks for more
    for scopes in (["chat"], ["sessions:write"], ["admin", "chat"]):
        response = call(stack, key, "POST", "/v1/api-keys", json={"name": "wider", "scopes": scopes})
        # then
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("scope_not_grantable", "scopes")
    assert key_rows(tenant) == before
    # and by default it grants what it holds
    default = call(stack, key, "POST", "/v1/api-keys", json={"name": "same"})
    assert default.status_code == 201
    assert default.json()["scopes"] == [SESSIONS_READ, ADMIN]
    narrower = call(stack, key, "POST", "/v1/api-keys", json={"name": "less", "scopes": ["sessions:read"]})
    assert narrower.status_code == 201
    assert narrower.json()["scopes"] == [SESSIONS_READ]


def test_a_key_cannot_make_a_key_with_looser_limits_or_a_longer_life(stack, tenant):
    # given a limited key that expires in two days
    expires = timezone.now() + timedelta(days=2)
    key = make_key(tenant, ALL_SCOPES, requests_per_minute=10, concurrent_turns=1, expires_at=expires)
    before = key_rows(tenant)
    # when it asks for more
    refused = [
        call(stack, key, "POST", "/v1/api-keys", json={"name": "x", "requests_per_minute": 11}),
        call(stack, key, "POST", "/v1/api-keys", json={"name": "x", "concurrent_turns": 5}),
        call(stack, key, "POST", "/v1/api-keys", json={"name": "x", "expires_in_days": 30}),
    ]
    # then
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert [r.json()["error"]["param"] for r in refused] == [
        "requests_per_minute",
        "concurrent_turns",
        "expires_at",
    ]
    assert key_rows(tenant) == before
    # and what it leaves out it passes on
    child = call(stack, key, "POST", "/v1/api-keys", json={"name": "child", "tokens_per_day": 500})
    assert child.status_code == 201, child.text
    assert child.json()["limits"] == {"requests_per_minute": 10, "tokens_per_day": 500, "concurrent_turns": 1}
    assert child.json()["expires_at"] == int(expires.timestamp())
    tighter = call(stack, key, "POST", "/v1/api-keys", json={"name": "tight", "requests_per_minute": 5})
    assert tighter.json()["limits"]["requests_per_minute"] == 5


def test_a_user_grants_at_most_their_role(tenant, org_member, org_admin, org_owner):
    # given
    before = key_rows(tenant)
    # when a member asks for an admin key
    with pytest.raises(PermissionDenied) as refused:
        api_key_issue(principal=as_user(org_member), name="sneaky", scopes=[CHAT, ADMIN])
    # then
    assert refused.value.code == "scope_not_grantable"
    assert key_rows(tenant) == before
    # and a member's default is the member's permissions; an admin's and owner's every scope
    assert api_key_issue(principal=as_user(org_member), name="m").api_key.scopes == [
        CHAT,
        SESSIONS_READ,
        SESSIONS_WRITE,
    ]
    assert api_key_issue(principal=as_user(org_admin), name="a").api_key.scopes == ALL_SCOPES
    owned = api_key_issue(principal=as_user(org_owner), name="o").api_key
    assert (owned.scopes, owned.created_by) == (ALL_SCOPES, org_owner.user)


def test_a_key_made_by_a_key_answers_to_the_same_person(tenant, org_admin):
    parent = api_key_issue(principal=as_user(org_admin), name="parent").api_key
    child = api_key_issue(principal=Principal(organization=tenant.organization, api_key=parent), name="child")
    assert child.api_key.created_by == org_admin.user


# --- listing and revoking ---------------------------------------------------------------------


def test_list_shows_every_key_of_the_organization_and_no_secret(stack, tenant, other_tenant, org_admin):
    # given keys in several states, and a key of another organization
    made = api_key_issue(principal=as_user(org_admin), name="by-admin", scopes=[CHAT])
    revoked = api_key_create(organization=tenant.organization, name="old")
    call(stack, tenant.key, "DELETE", f"/v1/api-keys/{revoked.api_key.pk}")
    assert chat(stack, made.secret).status_code == 200
    # when
    response = call(stack, tenant.key, "GET", "/v1/api-keys")
    # then
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(key["name"], key["scopes"]) for key in data] == [
        ("old", ALL_SCOPES),
        ("by-admin", [CHAT]),
        ("test", ALL_SCOPES),
    ]
    by_name = {key["name"]: key for key in data}
    assert by_name["old"]["revoked_at"] is not None
    assert by_name["by-admin"]["revoked_at"] is None
    assert by_name["by-admin"]["last_used_at"] is not None
    assert by_name["by-admin"]["created_by"] == {"id": org_admin.user.pk, "username": org_admin.user.username}
    assert by_name["test"]["last_used_at"] is not None
    assert set(by_name["test"]) == {
        "id",
        "object",
        "name",
        "prefix",
        "last_four",
        "redacted_value",
        "scopes",
        "created",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "created_by",
        "limits",
    }
    for secret in (tenant.key, made.secret, revoked.secret, other_tenant.key):
        assert secret not in response.text
    for row in ApiKey.objects.filter(organization=tenant.organization):
        assert row.secret_hash not in response.text
    assert other_tenant.api_key.prefix not in response.text


def test_revoking_a_key_refuses_it_at_once_and_is_audited(stack, tenant):
    # given a key in use
    issued = api_key_create(organization=tenant.organization, name="doomed")
    assert chat(stack, issued.secret).status_code == 200
    # when
    response = call(stack, tenant.key, "DELETE", f"/v1/api-keys/{issued.api_key.pk}")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == issued.api_key.pk
    assert body["revoked_at"] is not None
    refused = chat(stack, issued.secret)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    # and again changes nothing
    again = call(stack, tenant.key, "DELETE", f"/v1/api-keys/{issued.api_key.pk}")
    assert again.status_code == 200
    assert again.json()["revoked_at"] == body["revoked_at"]
    events = list(
        AuditEvent.objects.filter(organization=tenant.organization).values_list(
            "action", "target", "actor_api_key"
        )
    )
    assert events == [("api_key.revoked", f"api_key:{issued.api_key.pk}", tenant.api_key.pk)]


def test_a_key_can_revoke_itself(stack, tenant):
    key = make_key(tenant, [ADMIN, CHAT])
    own = ApiKey.objects.get(organization=tenant.organization, name="scoped")
    assert call(stack, key, "DELETE", f"/v1/api-keys/{own.pk}").status_code == 200
    assert chat(stack, key).status_code == 401
    assert call(stack, key, "GET", "/v1/api-keys").status_code == 401


def test_creating_a_key_is_audited_without_its_secret(stack, tenant):
    response = call(stack, tenant.key, "POST", "/v1/api-keys", json={"name": "audited", "scopes": ["chat"]})
    body = response.json()
    event = AuditEvent.objects.get(organization=tenant.organization)
    assert (event.action, event.target, event.actor_api_key_id, event.actor_user_id) == (
        "api_key.created",
        f"api_key:{body['id']}",
        tenant.api_key.pk,
        None,
    )
    assert event.data == {
        "name": "audited",
        "prefix": body["prefix"],
        "last_four": body["last_four"],
        "scopes": ["chat"],
        "expires_at": None,
        "requests_per_minute": None,
        "tokens_per_day": None,
        "concurrent_turns": None,
    }
    assert body["key"] not in str(event.data)


def test_another_organizations_key_looks_missing(stack, tenant, other_tenant):
    # given
    foreign = other_tenant.api_key.pk
    missing = ApiKey.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000
    before = key_rows(other_tenant)

    def expected(key_id) -> dict:
        return {
            "error": {
                "message": f"No API key found with id '{key_id}'.",
                "type": "invalid_request_error",
                "param": "id",
                "code": "api_key_not_found",
            }
        }

    # when / then
    for method in ("GET", "DELETE"):
        for key_id in (foreign, missing):
            response = call(stack, tenant.key, method, f"/v1/api-keys/{key_id}")
            assert response.status_code == 404
            assert response.json() == expected(key_id)
        assert call(stack, tenant.key, method, "/v1/api-keys/not-a-number").json() == expected("not-a-number")
    assert key_rows(other_tenant) == before
    assert chat(stack, other_tenant.key).status_code == 200
    listed = call(stack, tenant.key, "GET", "/v1/api-keys").json()["data"]
    assert foreign not in [key["id"] for key in listed]


# --- members ----------------------------------------------------------------------------------


def test_admins_see_the_members(stack, tenant, org_owner, org_admin, org_member, outsider):
    key = make_key(tenant, [ADMIN])
    response = call(stack, key, "GET", "/v1/members")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [(member["id"], member["username"], member["role"]) for member in data] == [
        (org_owner.user.pk, org_owner.user.username, "owner"),
        (org_admin.user.pk, org_admin.user.username, "admin"),
        (org_member.user.pk, org_member.user.username, "member"),
    ]
    assert data[0]["email"] == org_owner.user.email
    assert data[0]["object"] == "organization.member"
    detail = call(stack, key, "GET", f"/v1/members/{org_member.user.pk}")
    assert detail.json() == data[2]
    foreign = call(stack, key, "GET", f"/v1/members/{outsider.user.pk}")
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "member_not_found"


def test_no_key_manages_members(stack, tenant, org_member, outsider):
    # given a key with every scope
    before = list(Membership.objects.filter(organization=tenant.organization).values_list("user_id", "role"))
    # when
    responses = [
        call(stack, tenant.key, "POST", "/v1/members", json={"username": outsider.user.username}),
        call(stack, tenant.key, "PATCH", f"/v1/members/{org_member.user.pk}", json={"role": "owner"}),
        call(stack, tenant.key, "DELETE", f"/v1/members/{org_member.user.pk}"),
    ]
    # then
    for response in responses:
        assert_refused(response, MEMBERS)
    assert (
        list(Membership.objects.filter(organization=tenant.organization).values_list("user_id", "role"))
        == before
    )


def test_owners_add_change_and_remove_members(tenant, org_owner, outsider):
    actor = as_user(org_owner)
    # add
    membership = membership_add(
        organization=tenant.organization, user=outsider.user, role="member", actor=actor
    )
    assert membership.role == "member"
    with pytest.raises(Conflict):
        membership_add(organization=tenant.organization, user=outsider.user, role="admin", actor=actor)
    # change
    assert membership_change_role(membership=membership, role="admin", actor=actor).role == "admin"
    # remove
    membership_remove(membership=membership, actor=actor)
    assert not Membership.objects.filter(organization=tenant.organization, user=outsider.user).exists()
    outsider.user.refresh_from_db()
    assert outsider.user.default_organization == outsider.organization
    events = AuditEvent.objects.filter(organization=tenant.organization).order_by("pk")
    assert [(event.action, event.target, event.actor_user_id) for event in events] == [
        ("member.added", f"user:{outsider.user.pk}", org_owner.user.pk),
        ("member.role_changed", f"user:{outsider.user.pk}", org_owner.user.pk),
        ("member.removed", f"user:{outsider.user.pk}", org_owner.user.pk),
    ]
    assert events[1].data == {"username": outsider.user.username, "from": "member", "to": "admin"}


def test_the_last_owner_can_be_neither_demoted_nor_removed(tenant, org_owner):
    membership = Membership.objects.get(organization=tenant.organization, user=org_owner.user)
    with pytest.raises(Conflict) as demoted:
        membership_change_role(membership=membership, role="admin", actor=as_user(org_owner))
    with pytest.raises(Conflict) as removed:
        membership_remove(membership=membership, actor=as_user(org_owner))
    assert demoted.value.status == removed.value.status == 409
    assert demoted.value.code == "last_owner"
    assert Membership.objects.get(pk=membership.pk).role == "owner"
    # with a second owner, the first may step down
    second = make_person(tenant, "owner")
    assert (
        membership_change_role(membership=membership, role="member", actor=as_user(second)).role == "member"
    )


def test_a_demoted_person_keeps_no_key_beyond_their_new_role(stack, tenant, org_owner, org_admin):
    # given keys the admin made
    full = api_key_issue(principal=as_user(org_admin), name="full")
    admin_only = api_key_issue(principal=as_user(org_admin), name="admin-only", scopes=[ADMIN])
    membership = Membership.objects.get(organization=tenant.organization, user=org_admin.user)
    # when they become a member
    membership_change_role(membership=membership, role="member", actor=as_user(org_owner))
    # then their keys lose what a member may not do
    assert ApiKey.objects.get(pk=full.api_key.pk).scopes == [CHAT, SESSIONS_READ, SESSIONS_WRITE]
    assert ApiKey.objects.get(pk=admin_only.api_key.pk).revoked_at is not None
    assert chat(stack, full.secret).status_code == 200
    assert_refused(call(stack, full.secret, "GET", "/v1/api-keys"), ADMIN)
    assert call(stack, admin_only.secret, "GET", "/v1/api-keys").status_code == 401
    # and when they leave, the rest goes too
    membership_remove(membership=membership, actor=as_user(org_owner))
    assert chat(stack, full.secret).status_code == 401


# --- as a signed-in user (JWT) ----------------------------------------------------------------


def sign_in(stack, person) -> str:
    response = httpx.post(
        f"{stack.url}/v1/auth/token",
        json={"username": person.user.username, "password": person.password},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access"]


def test_a_member_uses_agents_and_sessions_and_manages_nothing(stack, tenant, org_member):
    token = sign_in(stack, org_member)
    assert chat(stack, token, session_id="by-member").status_code == 200
    assert call(stack, token, "GET", "/v1/sessions").status_code == 200
    assert call(stack, token, "DELETE", "/v1/sessions/by-member").status_code == 200
    refused = call(stack, token, "POST", "/v1/agents", json={"slug": "nope", "backend": "echo"})
    assert_refused(refused, ADMIN)
    assert f"role 'member' in organization '{tenant.organization.slug}'" in refused.json()["error"]["message"]
    assert_refused(call(stack, token, "POST", "/v1/api-keys", json={"name": "k"}), ADMIN)
    assert_refused(call(stack, token, "GET", "/v1/members"), ADMIN)
    assert list(Agent.objects.filter(organization=tenant.organization).values_list("slug", flat=True)) == [
        "echo"
    ]


def test_an_admin_manages_agents_and_keys_but_not_members(stack, tenant, org_admin, org_member):
    token = sign_in(stack, org_admin)
    assert (
        call(stack, token, "POST", "/v1/agents", json={"slug": "desk", "backend": "echo"}).status_code == 201
    )
    minted = call(stack, token, "POST", "/v1/api-keys", json={"name": "mine"})
    assert minted.status_code == 201, minted.text
    assert minted.json()["scopes"] == ALL_SCOPES
    assert minted.json()["created_by"] == {"id": org_admin.user.pk, "username": org_admin.user.username}
    event = AuditEvent.objects.get(organization=tenant.organization, action="api_key.created")
    assert (event.actor_user_id, event.actor_api_key_id) == (org_admin.user.pk, None)
    assert_refused(
        call(stack, token, "PATCH", f"/v1/members/{org_member.user.pk}", json={"role": "admin"}), MEMBERS
    )
    assert Membership.objects.get(organization=tenant.organization, user=org_member.user).role == "member"


def test_an_owner_manages_members_over_http(stack, tenant, org_owner, org_member, outsider):
    token = sign_in(stack, org_owner)
    # add by email, then by username
    added = call(
        stack, token, "POST", "/v1/members", json={"email": outsider.user.email.upper(), "role": "admin"}
    )
    assert added.status_code == 201, added.text
    assert (added.json()["id"], added.json()["role"]) == (outsider.user.pk, "admin")
    twice = call(stack, token, "POST", "/v1/members", json={"username": outsider.user.username})
    assert twice.status_code == 409
    unknown = call(stack, token, "POST", "/v1/members", json={"username": "nobody-at-all"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "user_not_found")
    planted = call(
        stack, token, "POST", "/v1/members", json={"username": "x", "organization": outsider.organization.pk}
    )
    assert (planted.status_code, planted.json()["error"]["param"]) == (400, "organization")
    # change and remove
    changed = call(stack, token, "PATCH", f"/v1/members/{org_member.user.pk}", json={"role": "admin"})
    assert changed.status_code == 200
    assert changed.json()["role"] == "admin"
    removed = call(stack, token, "DELETE", f"/v1/members/{outsider.user.pk}")
    assert removed.json() == {
        "id": outsider.user.pk,
        "object": "organization.member.deleted",
        "deleted": True,
    }
    # the last owner stays
    last = call(stack, token, "PATCH", f"/v1/members/{org_owner.user.pk}", json={"role": "member"})
    assert (last.status_code, last.json()["error"]["code"]) == (409, "last_owner")
    assert call(stack, token, "DELETE", f"/v1/members/{org_owner.user.pk}").status_code == 409
    # another organization's member looks missing
    foreign = call(stack, token, "DELETE", f"/v1/members/{outsider.user.pk}")
    assert foreign.status_code == 404
    assert Membership.objects.filter(organization=outsider.organization, user=outsider.user).exists()


def test_two_owners_demoting_each_other_at_once_leave_one_owner(stack, tenant, org_owner):
    # given two owners
    second = make_person(tenant, "owner")
    tokens = {org_owner.user.pk: sign_in(stack, org_owner), second.user.pk: sign_in(stack, second)}
    # when each demotes the other at the same moment
    targets = [(tokens[org_owner.user.pk], second.user.pk), (tokens[second.user.pk], org_owner.user.pk)]
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(
            pool.map(
                lambda job: (
                    call(stack, job[0], "PATCH", f"/v1/members/{job[1]}", json={"role": "member"}).status_code
                ),
                targets,
            )
        )
    # then exactly one succeeded
    assert statuses in ([200, 409], [200, 403])
    assert Membership.objects.filter(organization=tenant.organization, role="owner").count() == 1
