"""A canary API key, minted through the API and used for every kind of call (successes, bad
JSON, unknown models, missing objects, refusals, a revoke, its own revocation), never shows up
anywhere it could leak from: the servers' logs, any answer but the one that minted it, the
admin's pages, the audit trail, any database column or the Redis keyspace.

The same for an agent's own secrets that an upstream or a webhook quotes back in its error (a
canary upstream key, a canary signing secret and the signatures made with it): redacted before
the error is answered, streamed, stored, exported or logged."""

from __future__ import annotations

import json
import re
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
from agents.models import Agent
from agents.redaction import agent_secrets, redact
from agents.secrets import seal
from tests.fakes import LEAKY_WEBHOOK_SECRET, FakeServer
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


def _record(canary: Canary | EchoedSecrets, what: str, response: httpx.Response) -> httpx.Response:
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


# --- an agent's secrets, quoted back by its upstream or webhook ---------------------------------


@dataclass
class EchoedSecrets:
    upstream_key: str
    webhook_secret: str
    # The HMACs of the Parley-Signature headers sent to the webhook (known once it was called).
    signatures: list[str] = field(default_factory=list)
    # Every answer about the failed turns: (what was asked, status, headers and body as text).
    answers: list[tuple[str, int, str]] = field(default_factory=list)
    # The bodies of those answers, by what was asked.
    bodies: dict[str, str] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        # A secret's random part alone must not show either.
        return [
            self.upstream_key,
            self.upstream_key.removeprefix("sk-canary-"),
            self.webhook_secret,
            self.webhook_secret.removeprefix("whsec-leaky-"),
            *self.signatures,
        ]

    def leaks_in(self, text: str) -> bool:
        return any(secret in text for secret in self.secrets)


LEAKY_AGENTS = ("leaky-upstream", "leaky-hook")


def _ask_the_leaky_agents(stack: Stack, echoed: EchoedSecrets, admin_key: str, chat_key: str) -> None:
    admin = {"Authorization": f"Bearer {admin_key}"}
    chat_only = {"Authorization": f"Bearer {chat_key}"}
    with httpx.Client(base_url=stack.url, timeout=30) as http:

        def send(what: str, method: str, path: str, headers: dict, **kwargs) -> httpx.Response:
            response = _record(echoed, what, http.request(method, path, headers=headers, **kwargs))
            echoed.bodies[what] = response.text
            return response

        for slug in LEAKY_AGENTS:
            session_id = f"{slug}-session"
            body = {
                "model": slug,
                "messages": [{"role": "user", "content": "hello"}],
                "session_id": session_id,
            }
            turn_id = send(f"{slug} chat", "POST", "/v1/chat/completions", chat_only, json=body).headers[
                "X-Turn-Id"
            ]
            with http.stream(
                "POST", "/v1/chat/completions", headers=chat_only, json={**body, "stream": True}
            ) as streamed:
                text = streamed.read().decode()
                echoed.answers.append((f"{slug} streamed chat", streamed.status_code, text))
                echoed.bodies[f"{slug} streamed chat"] = text
            send(f"{slug} turn", "GET", f"/v1/turns/{turn_id}", chat_only)
            send(f"{slug} replayed events", "GET", f"/v1/turns/{turn_id}/events", chat_only)
            send(f"{slug} session", "GET", f"/v1/sessions/{session_id}", admin)
            send(f"{slug} export", "GET", f"/v1/sessions/{session_id}/export", admin)
        send("usage", "GET", "/v1/usage", admin)


@pytest.fixture(scope="module")
def echoed(
    stack: Stack, fake_upstream: FakeServer, fake_webhook: FakeServer, django_db_blocker
) -> Iterator[EchoedSecrets]:
    with django_db_blocker.unblock():
        organization = organization_create(slug=f"leaky-{uuid.uuid4().hex[:10]}")
        admin_key = api_key_create(organization=organization, name="admin").secret
        chat_key = api_key_create(organization=organization, name="chat", scopes=["chat"]).secret
        echoed = EchoedSecrets(
            upstream_key=f"sk-canary-{uuid.uuid4().hex}", webhook_secret=LEAKY_WEBHOOK_SECRET
        )
        # given agents, made through the API, whose upstream and webhook quote their secrets back
        agents = [
            {
                "slug": "leaky-upstream",
                "backend": "openai",
                "backend_config": {
                    "base_url": f"{fake_upstream.url}/v1",
                    "model": "fake-401-echo",
                    "api_key": echoed.upstream_key,
                },
            },
            {
                "slug": "leaky-hook",
                "backend": "webhook",
                "backend_config": {"url": f"{fake_webhook.url}/leak", "secret": echoed.webhook_secret},
            },
        ]
        for agent in agents:
            created = httpx.post(
                f"{stack.api_url}/agents",
                headers={"Authorization": f"Bearer {admin_key}"},
                json=agent,
                timeout=30,
            )
            assert created.status_code == 201, created.text
        # when they are asked every way a client can
        _ask_the_leaky_agents(stack, echoed, admin_key, chat_key)
        with fake_webhook.lock:
            echoed.signatures = [
                request.headers["parley-signature"].split("v1=")[1]
                for request in fake_webhook.requests
                if request.path == "/leak"
            ]
        yield echoed


def _error_event(stream: str) -> dict:
    events = [line[6:] for line in stream.splitlines() if line.startswith("data: ")]
    assert events[-1] != "[DONE]"
    return json.loads(events[-1])


UPSTREAM_ERROR = {
    "error": {
        "message": "The upstream model refused the request: Incorrect API key provided: Bearer [redacted].",
        "type": "invalid_request_error",
        "param": None,
        "code": "upstream_invalid_request",
    }
}
WEBHOOK_MESSAGE = re.compile(
    re.escape('The webhook refused the turn (401): {"error": "signature t=')
    + r"[0-9]+"
    + re.escape(',v1=[redacted] does not match the secret [redacted]"}')
)


def test_the_leaky_agents_sent_their_secrets_and_got_them_back(echoed, fake_upstream, fake_webhook):
    # The control for every "nowhere" below: the secrets went out, and came back in the errors.
    with fake_upstream.lock:
        sent = [request.headers["authorization"] for request in fake_upstream.requests]
    assert sent.count(f"Bearer {echoed.upstream_key}") == 2  # two turns; a 401 is not retried
    assert len(echoed.signatures) == 2
    assert all(re.fullmatch("[0-9a-f]{64}", signature) for signature in echoed.signatures)


def test_an_upstream_quoting_the_key_gets_it_redacted_in_every_answer(echoed):
    assert json.loads(echoed.bodies["leaky-upstream chat"]) == UPSTREAM_ERROR
    assert _error_event(echoed.bodies["leaky-upstream streamed chat"]) == UPSTREAM_ERROR
    assert _error_event(echoed.bodies["leaky-upstream replayed events"]) == UPSTREAM_ERROR
    turn = json.loads(echoed.bodies["leaky-upstream turn"])
    assert (turn["status"], turn["error"]) == ("failed", UPSTREAM_ERROR["error"])
    export = json.loads(echoed.bodies["leaky-upstream export"])
    assert [exported["error"] for exported in export["turns"]] == [UPSTREAM_ERROR["error"]] * 2


def test_a_webhook_quoting_its_secret_and_signature_gets_them_redacted_in_every_answer(echoed):
    answer = json.loads(echoed.bodies["leaky-hook chat"])
    assert WEBHOOK_MESSAGE.fullmatch(answer["error"].pop("message")), answer
    assert answer == {"error": {"type": "server_error", "param": None, "code": "webhook_error"}}
    for what in ("leaky-hook streamed chat", "leaky-hook replayed events"):
        assert WEBHOOK_MESSAGE.fullmatch(_error_event(echoed.bodies[what])["error"]["message"]), what
    turn = json.loads(echoed.bodies["leaky-hook turn"])
    assert WEBHOOK_MESSAGE.fullmatch(turn["error"]["message"])
    export = json.loads(echoed.bodies["leaky-hook export"])
    assert len(export["turns"]) == 2
    assert all(WEBHOOK_MESSAGE.fullmatch(exported["error"]["message"]) for exported in export["turns"])


def test_no_answer_holds_an_echoed_secret(echoed):
    assert len(echoed.answers) == 13
    leaking = [what for what, _, text in echoed.answers if echoed.leaks_in(text)]
    assert leaking == []


def test_no_server_log_holds_an_echoed_secret(stack, echoed):
    assert stack.logs
    for log in stack.logs:
        text = log.read_text(errors="replace")
        assert not echoed.leaks_in(text), log.name


def test_no_database_column_holds_an_echoed_secret(echoed):
    # given every value of every table: turns, their event batches, messages, usage records too
    values = list(_every_stored_value())
    tables = {table for table, _ in values}
    assert {
        "conversations_turn",
        "conversations_turneventbatch",
        "conversations_message",
        "conversations_usagerecord",
    } <= tables
    # then the redacted errors are there, and the secrets are not
    assert any("Bearer [redacted]" in value for table, value in values if table == "conversations_turn")
    leaking = sorted({table for table, value in values if echoed.leaks_in(value)})
    assert leaking == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Incorrect API key provided: sk-proj-AbCdEf123456.", "Incorrect API key provided: [redacted]."),
        ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.c2lnbmF0dXJl", "Authorization: Bearer [redacted]"),
        ("got bearer abcdefgh12345678 from you", "got bearer [redacted] from you"),
        ("token Bearer eyJhbGciOi.JIUzI1NiJ9.c2ln expired.", "token Bearer [redacted] expired."),
        ("(Bearer abcdefgh12345678.)", "(Bearer [redacted].)"),
        (f"Parley-Signature: t=1700000000,v1={'ab' * 32}", "Parley-Signature: t=1700000000,v1=[redacted]"),
        ("temperature is not supported by this model", "temperature is not supported by this model"),
        ("the bearer of bad news", "the bearer of bad news"),
        ("task-1234567890 failed", "task-1234567890 failed"),
    ],
)
def test_credential_shapes_are_redacted_and_ordinary_text_is_not(text: str, expected: str):
    assert redact(text) == expected


def test_an_agents_own_secrets_are_redacted_whatever_their_shape():
    text = "key=my-own-key-123, again my-own-key-123, and a short one"
    assert redact(text, ["my-own-key-123", "short"]) == "key=[redacted], again [redacted], and a short one"


def test_an_agents_secrets_are_its_backends_and_its_tools(monkeypatch):
    # given a webhook agent with an http tool, and openai agents keyed in the environment
    webhook = Agent(
        backend="webhook",
        backend_config={"url": "http://127.0.0.1/hook", "secret": seal("whsec-backend-secret")},
        tools=[
            {"type": "http", "name": "lookup", "url": "http://127.0.0.1/t", "secret": seal("tool-secret-1")}
        ],
    )
    monkeypatch.setenv("PARLEY_UPSTREAM_KEY_REDACTION", "sk-from-the-environment")
    monkeypatch.setenv("SECRET_KEY", "the-servers-own-secret")
    offered = Agent(backend="openai", backend_config={"api_key_env": "PARLEY_UPSTREAM_KEY_REDACTION"})
    not_offered = Agent(backend="openai", backend_config={"api_key_env": "SECRET_KEY"})
    keyless = Agent(backend="openai", backend_config={"base_url": "http://127.0.0.1/v1"})
    # then
    assert agent_secrets(webhook) == ["whsec-backend-secret", "tool-secret-1"]
    assert agent_secrets(offered) == ["sk-from-the-environment"]
    assert agent_secrets(not_offered) == []  # never read, so never sent
    assert agent_secrets(keyless) == []  # the placeholder key is no secret
    assert agent_secrets(None) == []
