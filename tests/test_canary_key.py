"""A canary API key, minted through the API and used for every kind of call (successes, bad
JSON, unknown models, missing objects, refusals, a revoke, its own revocation), never shows up
anywhere it could leak from: the servers' logs, any answer but the one that minted it, the
admin's pages, the audit trail, any database column or the Redis keyspace."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import openai
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from accounts.models import ApiKey, AuditEvent, User
from accounts.services import api_key_create, organization_create
from tests.live import Stack


@dataclass
class Canary:
    key: str
    prefix: str
    api_key_id: int
    organization_slug: str
    # Every answer the servers gave to a request made with (or about) the canary, but the one
    # that minted it: (what was asked, status, headers and body as text).
    answers: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def secret_part(self) -> str:
        """What follows the public prefix: the part that must never be seen, even alone."""
        return self.key[len(self.prefix) :]

    def leaks_in(self, text: str) -> bool:
        return self.key in text or self.secret_part in text


def _record(canary: Canary, what: str, response: httpx.Response) -> httpx.Response:
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    canary.answers.append((what, response.status_code, headers + "\n\n" + response.text))
    return response


def _use_the_canary(stack: Stack, canary: Canary) -> None:
    bearer = {"Authorization": f"Bearer {canary.key}"}
    chat = {"model": "echo", "messages": [{"role": "user", "content": "canary says hi"}]}

    with httpx.Client(base_url=stack.url, timeout=30, headers=bearer) as http:

        def send(what: str, method: str, path: str, **kwargs) -> httpx.Response:
            return _record(canary, what, http.request(method, path, **kwargs))

        # successes
        answer = send("chat", "POST", "/v1/chat/completions", json={**chat, "session_id": "canary-session"})
        assert answer.status_code == 200, answer.text
        turn_id = answer.headers["X-Turn-Id"]
        with http.stream(
            "POST", "/v1/chat/completions", json={**chat, "stream": True, "session_id": "canary-session"}
        ) as streamed:
            body = streamed.read()
            canary.answers.append(("streamed chat", streamed.status_code, body.decode()))
        send("replayed events", "GET", f"/v1/turns/{turn_id}/events")
        send("turn", "GET", f"/v1/turns/{turn_id}")
        send("models", "GET", "/v1/models")
        send("sessions", "GET", "/v1/sessions")
        send("session", "GET", "/v1/sessions/canary-session")
        send("export", "GET", "/v1/sessions/canary-session/export")
        send("agents", "GET", "/v1/agents")
        send("agent", "POST", "/v1/agents", json={"slug": "canary-agent", "backend": "echo"})
        send("keys", "GET", "/v1/api-keys")
        send("own key", "GET", f"/v1/api-keys/{canary.api_key_id}")
        send("members", "GET", "/v1/members")
        send("settings", "GET", "/v1/settings/automation")
        send("usage", "GET", "/v1/usage")
        send("NLX chat", "POST", "/canary/web-en-US/chat/completions", json={"model": "nlx", "messages": []})
        # a key made and revoked by the canary
        minted = http.post("/v1/api-keys", json={"name": "canary-child", "scopes": ["chat"]})
        assert minted.status_code == 201, minted.text
        send("revoke child", "DELETE", f"/v1/api-keys/{minted.json()['id']}")
        # failures
        send(
            "bad JSON",
            "POST",
            "/v1/chat/completions",
            content=b'{"model": "echo", "messages": [',
            headers={"Content-Type": "application/json"},
        )
        send("empty body", "POST", "/v1/chat/completions", content=b"")
        send("bad model", "POST", "/v1/chat/completions", json={**chat, "model": "no-such-model"})
        send("bad field", "POST", "/v1/chat/completions", json={**chat, "temperature": "hot"})
        send("foreign session", "GET", "/v1/sessions/no-such-session")
        send("missing turn", "GET", "/v1/turns/turn_missing/events")
        send("missing key", "DELETE", "/v1/api-keys/999999999")
        send("missing agent", "PATCH", "/v1/agents/no-such-agent", json={"name": "x"})
        send("wrong method", "PUT", "/v1/agents/echo", json={})
        send("unknown path", "GET", "/v1/no-such-endpoint")
        send("mass assignment", "POST", "/v1/api-keys", json={"name": "x", "organization": 1})
        send("escalation", "POST", "/v1/members", json={"username": "nobody", "role": "owner"})
        send("bad org header", "GET", "/v1/models", headers={"X-Organization": "no-such-org"})
        # the key where it does not belong
        for scheme in ("Token", "Basic", "bearer"):
            send(f"{scheme} scheme", "GET", "/v1/models", headers={"Authorization": f"{scheme} {canary.key}"})
        send("tampered", "GET", "/v1/models", headers={"Authorization": f"Bearer {canary.key}x"})
        send("truncated", "GET", "/v1/models", headers={"Authorization": f"Bearer {canary.key[:-1]}"})
        send("as a JWT", "POST", "/v1/auth/token/verify", json={"token": canary.key})
        send("as a refresh token", "POST", "/v1/auth/token/refresh", json={"refresh": canary.key})
        send("as a password", "POST", "/v1/auth/token", json={"username": "canary", "password": canary.key})

    # through the official SDK, streaming
    sdk = openai.OpenAI(base_url=stack.api_url, api_key=canary.key, max_retries=0, timeout=30)
    chunks = list(sdk.chat.completions.create(model="echo", messages=chat["messages"], stream=True))
    assert chunks
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="nope", messages=chat["messages"])
    canary.answers.append(("SDK error", 404, json.dumps(missing.value.body)))

    # and last, the canary revokes itself and is refused from then on
    with httpx.Client(base_url=stack.url, timeout=30, headers=bearer) as http:
        revoked = _record(canary, "self revoke", http.delete(f"/v1/api-keys/{canary.api_key_id}"))
        assert revoked.status_code == 200, revoked.text
        after = _record(canary, "after revoke", http.get("/v1/models"))
        assert after.status_code == 401


@pytest.fixture(scope="module")
def canary(stack: Stack, django_db_blocker) -> Iterator[Canary]:
    with django_db_blocker.unblock():
        organization = organization_create(slug=f"canary-{uuid.uuid4().hex[:10]}")
        bootstrap = api_key_create(organization=organization, name="bootstrap")
        # minted through the API, so that its one showing passes through the servers too
        minted = httpx.post(
            f"{stack.api_url}/api-keys",
            headers={"Authorization": f"Bearer {bootstrap.secret}"},
            json={"name": "canary"},
            timeout=30,
        )
        assert minted.status_code == 201, minted.text
        shown = minted.json()
        canary = Canary(
            key=shown["key"],
            prefix=shown["prefix"],
            api_key_id=shown["id"],
            organization_slug=organization.slug,
        )
        _use_the_canary(stack, canary)
        yield canary


def test_the_canary_was_used_for_successes_and_failures(canary):
    statuses = [status for _, status, _ in canary.answers]
    assert statuses.count(200) >= 10
    assert {400, 401, 403, 404, 405} <= set(statuses)


def test_no_answer_holds_the_canary(canary):
    leaking = [what for what, _, text in canary.answers if canary.leaks_in(text)]
    assert leaking == []


def test_no_server_log_holds_the_canary(stack, canary):
    assert stack.logs
    for log in stack.logs:
        text = log.read_text(errors="replace")
        assert not canary.leaks_in(text), log.name


def test_no_admin_page_holds_the_canary(canary):
    # given the operator signed in to the admin
    operator = User.objects.create_superuser(
        username=f"operator-{uuid.uuid4().hex[:8]}", email="", password=None
    )
    browser = Client()
    browser.force_login(operator)
    api_key = ApiKey.objects.get(pk=canary.api_key_id)
    organization = api_key.organization
    # when they look at the key wherever the admin shows it
    pages = [
        "/admin/",
        "/admin/accounts/apikey/",
        f"/admin/accounts/apikey/?q={api_key.prefix}",
        f"/admin/accounts/apikey/?organization__id__exact={organization.pk}",
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        f"/admin/accounts/apikey/{api_key.pk}/history/",
        f"/admin/accounts/organization/{organization.pk}/change/",
        "/admin/accounts/user/",
    ]
    # then it is recognisable by its prefix and last four, and never there in full
    for page in pages:
        response = browser.get(page)
        assert response.status_code == 200, page
        assert not canary.leaks_in(response.content.decode()), page
    change = browser.get(f"/admin/accounts/apikey/{api_key.pk}/change/").content.decode()
    assert api_key.prefix in change and api_key.last_four in change


def test_no_audit_event_holds_the_canary(canary):
    events = AuditEvent.objects.filter(organization__slug=canary.organization_slug)
    actions = sorted(event.action for event in events)
    assert actions == ["api_key.created", "api_key.created", "api_key.revoked", "api_key.revoked"]
    for event in events:
        assert not canary.leaks_in(json.dumps([event.action, event.target, event.data]))


def _every_stored_value() -> Iterator[tuple[str, str]]:
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            # Table names come from the schema itself, quoted.
            cursor.execute(f"SELECT * FROM {quote(table)}")
            for row in cursor.fetchall():
                for value in row:
                    if value is None:
                        continue
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", errors="replace")
                    yield table, value if isinstance(value, str) else json.dumps(value, default=str)


def test_no_database_column_holds_the_canary_in_clear(canary):
    # given every value of every table (what the admin's own log, sessions and usage hold too)
    values = list(_every_stored_value())
    tables = {table for table, _ in values}
    assert {"accounts_apikey", "accounts_auditevent", "django_session"} <= tables
    # then the key's public prefix is there (the scan reads the keys) and the key is not
    assert any(canary.prefix in value for _, value in values)
    leaking = sorted({table for table, value in values if canary.leaks_in(value)})
    assert leaking == []


@pytest.mark.production_only  # the embedded mode keeps nothing in Redis
def test_no_redis_key_or_value_holds_the_canary(canary):
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    leaking = []
    for name in client.scan_iter(count=1000):
        kind = client.type(name).decode()
        if kind == "string":
            values = [client.get(name)]
        elif kind == "list":
            values = client.lrange(name, 0, -1)
        elif kind == "hash":
            values = [item for pair in client.hgetall(name).items() for item in pair]
        elif kind == "set":
            values = list(client.smembers(name))
        elif kind == "zset":
            values = client.zrange(name, 0, -1)
        else:
            values = []
        for value in [name, *values]:
            if value is not None and canary.leaks_in(value.decode("utf-8", errors="replace")):
                leaking.append(name)
    client.close()
    assert leaking == []
