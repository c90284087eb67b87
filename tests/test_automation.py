"""GET/PUT /v1/settings/automation, and what each setting changes, against the live stack."""

from __future__ import annotations

import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import AuditEvent, AutomationSettings
from agents.models import Agent
from config.celery import app as celery_app
from sessions.models import Message, Session, Turn
from sessions.services import session_title_from, sessions_delete_idle
from sessions.tasks import delete_idle_sessions
from tests.conftest import Tenant
from tests.live import BIN, Stack, api, spawn, stop, wait_until

DEFAULTS = {
    "object": "automation_settings",
    "auto_create_sessions": True,
    "session_idle_ttl": None,
    "history_max_messages": None,
    "history_max_tokens": None,
    "auto_title": False,
    "default_agent": None,
}


def put_settings(stack: Stack, tenant: Tenant, body: Any) -> httpx.Response:
    return api(stack, tenant, "PUT", "/settings/automation", json=body)


def chat(stack: Stack, tenant: Tenant, text: str, **fields: Any) -> httpx.Response:
    body = {"model": "echo", "messages": [{"role": "user", "content": text}], **fields}
    return api(stack, tenant, "POST", "/chat/completions", json=body)


def answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def stored_settings(tenant: Tenant) -> dict[str, Any]:
    return AutomationSettings.objects.filter(organization=tenant.organization).values().get()


# --- GET and PUT ---------------------------------------------------------------------------------


def test_get_answers_the_defaults_of_a_new_organization(stack, tenant):
    response = api(stack, tenant, "GET", "/settings/automation")
    assert response.status_code == 200
    assert response.json() == DEFAULTS


def test_put_changes_the_named_settings_and_keeps_the_others(stack, tenant):
    Agent.objects.create(organization=tenant.organization, slug="support", name="Support")
    # when
    first = put_settings(stack, tenant, {"session_idle_ttl": 3600, "auto_title": True})
    second = put_settings(stack, tenant, {"default_agent": "support", "history_max_messages": 20})
    # then each answer is the whole set, and GET agrees with the last
    assert first.status_code == second.status_code == 200
    assert first.json() == {**DEFAULTS, "session_idle_ttl": 3600, "auto_title": True}
    expected = {
        **DEFAULTS,
        "session_idle_ttl": 3600,
        "auto_title": True,
        "default_agent": "support",
        "history_max_messages": 20,
    }
    assert second.json() == expected
    assert api(stack, tenant, "GET", "/settings/automation").json() == expected


def test_put_null_switches_a_limit_off_and_the_get_answer_can_be_sent_back(stack, tenant):
    Agent.objects.create(organization=tenant.organization, slug="support", name="Support")
    put_settings(
        stack, tenant, {"session_idle_ttl": 60, "history_max_tokens": 500, "default_agent": "support"}
    )
    current = api(stack, tenant, "GET", "/settings/automation").json()
    # when the client sends back what it read, with limits switched off
    response = put_settings(
        stack,
        tenant,
        {**current, "session_idle_ttl": None, "history_max_tokens": None, "default_agent": None},
    )
    # then
    assert response.status_code == 200, response.text
    assert response.json() == DEFAULTS


def test_put_is_recorded_in_the_audit_log(stack, tenant):
    put_settings(stack, tenant, {"auto_create_sessions": False})
    event = AuditEvent.objects.get(organization=tenant.organization, action="automation_settings.updated")
    assert event.data == {"auto_create_sessions": False}
    assert event.actor_api_key_id == tenant.api_key.pk


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        pytest.param(
            {"auto_create_sessions": "false"}, "auto_create_sessions", "invalid_value", id="bool-string"
        ),
        pytest.param({"auto_create_sessions": 0}, "auto_create_sessions", "invalid_value", id="bool-int"),
        pytest.param({"auto_create_sessions": None}, "auto_create_sessions", "invalid_value", id="bool-null"),
        pytest.param({"auto_title": "yes"}, "auto_title", "invalid_value", id="auto-title-string"),
        pytest.param({"session_idle_ttl": 0}, "session_idle_ttl", "invalid_value", id="ttl-zero"),
        pytest.param({"session_idle_ttl": -5}, "session_idle_ttl", "invalid_value", id="ttl-negative"),
        pytest.param({"session_idle_ttl": "60"}, "session_idle_ttl", "invalid_value", id="ttl-string"),
        pytest.param({"session_idle_ttl": 1.5}, "session_idle_ttl", "invalid_value", id="ttl-float"),
        pytest.param({"session_idle_ttl": True}, "session_idle_ttl", "invalid_value", id="ttl-bool"),
        pytest.param({"session_idle_ttl": 2**31}, "session_idle_ttl", "invalid_value", id="ttl-too-big"),
        pytest.param(
            {"history_max_messages": 0}, "history_max_messages", "invalid_value", id="messages-zero"
        ),
        pytest.param({"history_max_tokens": "1k"}, "history_max_tokens", "invalid_value", id="tokens-string"),
        pytest.param({"default_agent": 42}, "default_agent", "invalid_value", id="agent-number"),
        pytest.param({"default_agent": "nobody"}, "default_agent", "agent_not_found", id="agent-missing"),
        pytest.param({"auto_create": False}, "auto_create", "unknown_parameter", id="unknown-field"),
    ],
)
def test_put_refuses_bad_values_naming_the_field_and_changes_nothing(stack, tenant, body, param, code):
    # given
    before = stored_settings(tenant)
    # when
    response = put_settings(stack, tenant, {"auto_title": True, **body})
    # then
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert stored_settings(tenant) == before
    assert not AuditEvent.objects.filter(organization=tenant.organization).exists()


def test_put_refuses_a_body_that_is_not_an_object(stack, tenant):
    before = stored_settings(tenant)
    response = put_settings(stack, tenant, [{"auto_title": True}])
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert stored_settings(tenant) == before


def test_another_organizations_agent_is_refused_as_default_exactly_like_a_missing_one(
    stack, tenant, other_tenant
):
    # given an agent of the other organization
    Agent.objects.create(organization=other_tenant.organization, slug="theirs", name="Theirs")
    before = stored_settings(tenant)
    # when this tenant names it, and a slug nobody has
    foreign = put_settings(stack, tenant, {"default_agent": "theirs"})
    missing = put_settings(stack, tenant, {"default_agent": "nobody"})
    # then both are the same 400 (but for the slug), and nothing changed
    assert foreign.status_code == missing.status_code == 400
    assert foreign.json() == {
        "error": {
            "message": "No agent found with slug 'theirs'.",
            "type": "invalid_request_error",
            "param": "default_agent",
            "code": "agent_not_found",
        }
    }
    assert missing.json()["error"] == {
        **foreign.json()["error"],
        "message": "No agent found with slug 'nobody'.",
    }
    assert stored_settings(tenant) == before


def test_each_organization_reads_and_changes_only_its_own_settings(stack, tenant, other_tenant):
    # given the other organization's settings
    put_settings(stack, other_tenant, {"auto_create_sessions": False, "session_idle_ttl": 30})
    theirs = stored_settings(other_tenant)
    # when this tenant reads and changes its own
    read = api(stack, tenant, "GET", "/settings/automation").json()
    put_settings(stack, tenant, {"auto_title": True, "session_idle_ttl": 99})
    # then it saw the defaults, and the other organization's settings are as they were
    assert read == DEFAULTS
    assert stored_settings(other_tenant) == theirs


def test_settings_need_credentials(stack):
    assert httpx.get(f"{stack.api_url}/settings/automation").status_code == 401
    assert httpx.put(f"{stack.api_url}/settings/automation", json={"auto_title": True}).status_code == 401


# --- auto_create_sessions ----------------------------------------------------------------------


def test_with_auto_creation_switched_off_an_unknown_session_is_404_and_none_is_stateless(stack, tenant):
    # given auto-creation switched off through the API
    assert put_settings(stack, tenant, {"auto_create_sessions": False}).status_code == 200
    # when a request names an unknown session, and another names none
    unknown = chat(stack, tenant, "hi", session_id="nope")
    stateless = api(
        stack,
        tenant,
        "POST",
        "/chat/completions",
        json={
            "model": "echo",
            "messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}],
        },
    )
    # then
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "session_not_found"
    assert stateless.status_code == 200
    assert stateless.json()["session_id"] is None
    assert "X-Session-Id" not in stateless.headers
    assert answer(stateless) == 'You said: y\nEarlier you said: "x"\n(2 messages in context)'
    assert not Session.objects.filter(organization=tenant.organization).exists()
    # and switched on again, the unknown session is created
    put_settings(stack, tenant, {"auto_create_sessions": True})
    assert chat(stack, tenant, "hi", session_id="nope").status_code == 200
    assert Session.objects.filter(organization=tenant.organization, external_id="nope").exists()


# --- session_idle_ttl --------------------------------------------------------------------------


def age(tenant: Tenant, session_id: str, seconds: float) -> None:
    Session.objects.filter(organization=tenant.organization, external_id=session_id).update(
        updated=timezone.now() - timedelta(seconds=seconds)
    )


def session_ids(tenant: Tenant) -> set[str]:
    return set(Session.objects.filter(organization=tenant.organization).values_list("external_id", flat=True))


def test_idle_sessions_are_deleted_by_the_periodic_task(stack, tenant, other_tenant):
    # given a TTL of one minute, and sessions idle for two minutes and for a few seconds
    assert put_settings(stack, tenant, {"session_idle_ttl": 60}).status_code == 200
    for session_id in ("idle", "fresh", "busy"):
        assert chat(stack, tenant, "hi", session_id=session_id).status_code == 200
        age(tenant, session_id, 120)
    age(tenant, "fresh", 5)
    # "busy" has a turn waiting to run: not idle, however old
    busy = Session.objects.get(organization=tenant.organization, external_id="busy")
    Turn.objects.create(
        organization=tenant.organization, session=busy, position=2, model="echo", fingerprint="x"
    )
    # and the other organization, without a TTL, has an old session too
    assert chat(stack, other_tenant, "hi", session_id="idle").status_code == 200
    age(other_tenant, "idle", 10**6)
    # when the beat task runs (its body, in this process)
    deleted = delete_idle_sessions()
    # then only the idle session is gone, with its transcript and turns
    assert deleted == 1
    assert session_ids(tenant) == {"fresh", "busy"}
    assert session_ids(other_tenant) == {"idle"}
    assert not Message.objects.filter(session__organization=tenant.organization, session__external_id="idle")
    assert api(stack, tenant, "GET", "/sessions/idle").status_code == 404
    # and running it again changes nothing
    assert delete_idle_sessions() == 0
    assert session_ids(tenant) == {"fresh", "busy"}


def test_a_new_message_keeps_a_session_alive(stack, tenant):
    put_settings(stack, tenant, {"session_idle_ttl": 60})
    chat(stack, tenant, "hi", session_id="talking")
    age(tenant, "talking", 120)
    # when the user writes again before the sweep
    assert chat(stack, tenant, "still here", session_id="talking").status_code == 200
    # then the session is no longer idle
    delete_idle_sessions()
    assert session_ids(tenant) == {"talking"}


def test_idle_sweep_works_in_batches(stack, tenant):
    put_settings(stack, tenant, {"session_idle_ttl": 1})
    for index in range(5):
        Session.objects.create(organization=tenant.organization, external_id=f"old-{index}")
        age(tenant, f"old-{index}", 10)
    assert sessions_delete_idle(batch_size=2) == 5
    assert session_ids(tenant) == set()


@pytest.mark.production_only  # SQLite has no row locks: its writers run one at a time
def test_idle_sweep_leaves_a_session_that_a_request_holds_right_now(stack, tenant):
    put_settings(stack, tenant, {"session_idle_ttl": 60})
    session = Session.objects.create(organization=tenant.organization, external_id="held")
    age(tenant, "held", 120)
    # given a request holding the session's row lock (as turn_submit does), in its own connection
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Session.objects.select_for_update().get(pk=session.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        # when the sweep runs meanwhile, it neither waits nor deletes the session
        assert delete_idle_sessions() == 0
        assert session_ids(tenant) == {"held"}
    finally:
        release.set()
        holder.join()
    # then the next sweep deletes it
    assert delete_idle_sessions() == 1


def test_the_beat_schedule_sends_the_idle_sweep(stack):
    schedule = celery_app.conf.beat_schedule
    entry = next(entry for entry in schedule.values() if entry["task"] == "parley.delete_idle_sessions")
    assert entry["schedule"] == 60.0
    assert "parley.delete_idle_sessions" in celery_app.tasks
    assert (
        "beat: celery -A config beat" in (Path(__file__).parent.parent / "platform" / "Procfile").read_text()
    )


@pytest.mark.production_only  # celery beat and workers run in the production mode only
def test_celery_beat_deletes_idle_sessions_through_a_worker(stack, tenant):
    # given an idle session
    put_settings(stack, tenant, {"session_idle_ttl": 60})
    chat(stack, tenant, "hi", session_id="beat-idle")
    age(tenant, "beat-idle", 120)
    # when a real beat process runs next to the stack's worker, sweeping every second
    log = Path(tempfile.mkdtemp(prefix="parley-beat-")) / "beat.log"
    beat = spawn(
        [str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO"],
        {**stack.env, "PARLEY_IDLE_SWEEP_SECONDS": "1"},
        log,
    )
    try:
        # then the worker deletes the session on the beat's order
        wait_until(
            lambda: "beat-idle" not in session_ids(tenant),
            timeout=30,
            what="celery beat",
            process=beat,
            log=log,
        )
    finally:
        stop([beat])
    assert b"parley.delete_idle_sessions" in log.read_bytes()


# --- history_max_messages / history_max_tokens --------------------------------------------------


def three_turns(stack: Stack, tenant: Tenant, model: str, session_id: str) -> str:
    for text in ("one", "two"):
        answer(chat(stack, tenant, text, model=model, session_id=session_id))
    return answer(chat(stack, tenant, "three", model=model, session_id=session_id))


def test_history_max_messages_of_the_organization_limits_what_the_agent_sees(stack, tenant):
    put_settings(stack, tenant, {"history_max_messages": 3})
    assert three_turns(stack, tenant, "echo", "window-1") == (
        'You said: three\nEarlier you said: "two"\n(3 messages in context)'
    )
    # the transcript itself is whole
    assert Session.objects.get(organization=tenant.organization, external_id="window-1").message_count == 6


def test_the_organizations_window_wins_over_the_agents_own(stack, tenant):
    Agent.objects.create(organization=tenant.organization, slug="wide", name="Wide", history_max_messages=50)
    put_settings(stack, tenant, {"history_max_messages": 1})
    assert three_turns(stack, tenant, "wide", "window-2") == "You said: three\n(1 message in context)"


def test_without_an_organization_window_the_agents_own_applies(stack, tenant):
    Agent.objects.create(
        organization=tenant.organization, slug="narrow", name="Narrow", history_max_messages=1
    )
    assert three_turns(stack, tenant, "narrow", "window-3") == "You said: three\n(1 message in context)"
    assert three_turns(stack, tenant, "echo", "window-4").endswith("(5 messages in context)")


def test_history_max_tokens_of_the_organization_limits_what_the_agent_sees(stack, tenant):
    # each short message costs about 6 tokens, each echo answer about 12
    put_settings(stack, tenant, {"history_max_tokens": 10})
    assert three_turns(stack, tenant, "echo", "window-5") == "You said: three\n(1 message in context)"


# --- auto_title ----------------------------------------------------------------------------------


def session_title(tenant: Tenant, session_id: str) -> str:
    return Session.objects.get(organization=tenant.organization, external_id=session_id).title


def test_auto_title_names_a_new_session_from_its_first_user_message(stack, tenant):
    put_settings(stack, tenant, {"auto_title": True})
    answer(chat(stack, tenant, "  How do I reset\nmy password?  ", session_id="titled"))
    answer(chat(stack, tenant, "Another question", session_id="titled"))
    assert session_title(tenant, "titled") == "How do I reset my password"
    assert api(stack, tenant, "GET", "/sessions/titled").json()["title"] == "How do I reset my password"


def test_auto_title_skips_system_messages_and_keeps_a_given_title(stack, tenant):
    put_settings(stack, tenant, {"auto_title": True})
    answer(
        chat(
            stack,
            tenant,
            "Plan a trip to Lisbon!",
            session_id="with-system",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Plan a trip to Lisbon!"},
            ],
        )
    )
    assert session_title(tenant, "with-system") == "Plan a trip to Lisbon"
    # a session that has a title keeps it
    api(stack, tenant, "POST", "/sessions", json={"id": "named", "title": "My own title"})
    answer(chat(stack, tenant, "Something else", session_id="named"))
    assert session_title(tenant, "named") == "My own title"


def test_without_auto_title_a_session_stays_untitled(stack, tenant):
    answer(chat(stack, tenant, "How do I reset my password?", session_id="untitled"))
    assert session_title(tenant, "untitled") == ""


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Hello there!", "Hello there"),
        ("What is 2 + 2?", "What is 2 + 2"),
        ("Line one\n\nline two...", "Line one line two"),
        ('Tell me about "quotes"', 'Tell me about "quotes"'),
        (
            "Please summarise the quarterly report for the board meeting next Tuesday afternoon",
            "Please summarise the quarterly report for the board meeting",
        ),
        ("x" * 80, "x" * 60),
        ("¿Dónde está la estación? —", "¿Dónde está la estación"),
        ("   ", ""),
    ],
)
def test_title_from_a_message_is_one_line_of_about_60_characters_without_trailing_punctuation(text, title):
    assert session_title_from(text) == title
    assert len(session_title_from(text)) <= 60


# --- default_agent -------------------------------------------------------------------------------


def test_a_request_without_model_uses_the_default_agent(stack, tenant):
    Agent.objects.create(
        organization=tenant.organization, slug="support", name="Support", system_prompt="Be kind."
    )
    put_settings(stack, tenant, {"default_agent": "support"})
    # when
    response = api(
        stack,
        tenant,
        "POST",
        "/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "session_id": "no-model"},
    )
    # then the default agent answered (its system prompt makes 2 messages)
    assert response.json()["model"] == "support"
    assert answer(response) == "You said: hi\n(2 messages in context)"
    turn = Turn.objects.get(organization=tenant.organization)
    assert (turn.model, turn.agent.slug) == ("support", "support")
    # and a request that names a model still gets that one
    named = chat(stack, tenant, "hi", model="echo")
    assert named.json()["model"] == "echo"


def test_without_model_and_without_a_default_agent_model_is_required(stack, tenant):
    response = api(
        stack,
        tenant,
        "POST",
        "/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "session_id": "no-default"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["param"] == "model"
    assert body["error"]["code"] == "missing_required_parameter"
    assert body["detail"][0]["loc"] == ["body", "model"]
    assert not Session.objects.filter(organization=tenant.organization).exists()
    assert not Turn.objects.filter(organization=tenant.organization).exists()


def test_a_deleted_default_agent_leaves_no_default(stack, tenant):
    agent = Agent.objects.create(organization=tenant.organization, slug="temp", name="Temp")
    put_settings(stack, tenant, {"default_agent": "temp"})
    agent.delete()
    assert api(stack, tenant, "GET", "/settings/automation").json()["default_agent"] is None
    response = api(
        stack, tenant, "POST", "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
