"""API keys and the operator commands."""

from __future__ import annotations

import hashlib
import io
import shlex
from datetime import timedelta

import httpx
from django.core.management import call_command
from django.utils import timezone

from accounts.models import ApiKey, Membership, Organization, User
from accounts.services import api_key_authenticate, api_key_create, api_key_revoke, organization_create
from agents.models import Agent


def test_a_new_organization_has_the_echo_agent_and_automation_settings():
    organization = organization_create(slug="fresh-org")
    assert list(Agent.objects.filter(organization=organization).values_list("slug", "backend")) == [
        ("echo", "echo")
    ]
    assert organization.automation.auto_create_sessions is True


def test_an_api_key_is_stored_only_as_a_hash_with_a_lookup_prefix():
    organization = organization_create(slug="keys-org")
    issued = api_key_create(organization=organization, name="ci")
    row = ApiKey.objects.get(pk=issued.api_key.pk)
    assert issued.secret.startswith("sk-parley-")
    assert issued.secret.startswith(row.prefix)
    assert len(issued.secret) == len("sk-parley-") + 52
    assert row.secret_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert row.last_four == issued.secret[-4:]
    for value in (row.prefix, row.secret_hash, row.name, row.last_four):
        assert issued.secret not in value


def test_authentication_accepts_the_key_and_refuses_near_misses():
    organization = organization_create(slug="auth-org")
    issued = api_key_create(organization=organization, name="ci")
    assert api_key_authenticate(raw_key=issued.secret) == issued.api_key
    assert ApiKey.objects.get(pk=issued.api_key.pk).last_used_at is not None
    tampered = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")
    assert api_key_authenticate(raw_key=tampered) is None
    assert api_key_authenticate(raw_key=issued.secret[:-1]) is None
    assert api_key_authenticate(raw_key="sk-other-" + issued.secret) is None


def test_revoked_and_expired_keys_are_refused():
    organization = organization_create(slug="dead-keys")
    revoked = api_key_create(organization=organization, name="revoked")
    api_key_revoke(api_key=revoked.api_key)
    expired = api_key_create(
        organization=organization, name="old", expires_at=timezone.now() - timedelta(seconds=1)
    )
    future = api_key_create(
        organization=organization, name="new", expires_at=timezone.now() + timedelta(days=1)
    )
    assert api_key_authenticate(raw_key=revoked.secret) is None
    assert api_key_authenticate(raw_key=expired.secret) is None
    assert api_key_authenticate(raw_key=future.secret) == future.api_key


def test_createapikey_prints_only_the_key_and_creates_the_organization():
    out, err = io.StringIO(), io.StringIO()
    call_command("createapikey", "ops-team", "--name", "deploy", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert out.getvalue() == key + "\n"
    assert "Created organization 'ops-team'" in err.getvalue()
    api_key = api_key_authenticate(raw_key=key)
    assert api_key.organization.slug == "ops-team"
    assert api_key.name == "deploy"
    assert Agent.objects.filter(organization__slug="ops-team", slug="echo").exists()


def test_createapikey_reuses_an_existing_organization():
    organization = organization_create(slug="existing-org")
    out, err = io.StringIO(), io.StringIO()
    call_command("createapikey", "existing-org", stdout=out, stderr=err)
    assert api_key_authenticate(raw_key=out.getvalue().strip()).organization == organization
    assert err.getvalue() == ""
    assert Organization.objects.filter(slug="existing-org").count() == 1


def test_seeddemo_creates_the_demo_tenant_admin_and_a_working_key(monkeypatch):
    monkeypatch.setenv("PARLEY_DEMO_PASSWORD", "demo-pass-123")
    out = io.StringIO()
    call_command("seeddemo", "--admin", "demo-admin", stdout=out)
    text = out.getvalue()
    key = next(line.split()[-1] for line in text.splitlines() if "API key:" in line)
    assert api_key_authenticate(raw_key=key).organization.slug == "demo"
    admin = User.objects.get(username="demo-admin")
    assert admin.is_superuser and admin.check_password("demo-pass-123")
    assert Membership.objects.get(user=admin, organization__slug="demo").role == "owner"
    # seeding again keeps the tenant and the admin, and prints a new key
    again = io.StringIO()
    call_command("seeddemo", "--admin", "demo-admin", stdout=again)
    assert Organization.objects.filter(slug="demo").count() == 1
    assert "password unchanged" in again.getvalue()


def seeded_key(output: str) -> str:
    return next(line.split()[-1] for line in output.splitlines() if "API key:" in line)


def test_seeding_again_revokes_the_earlier_demo_key(stack):
    # given the demo seeded once, as `make run` does, on the port the server was given
    first, second = io.StringIO(), io.StringIO()
    call_command("seeddemo", "--admin", "demo-admin", "--url", stack.url, stdout=first)
    # when it is seeded again
    call_command("seeddemo", "--admin", "demo-admin", "--url", stack.url, stdout=second)
    old_key, new_key = seeded_key(first.getvalue()), seeded_key(second.getvalue())
    # then only the new demo key is valid, and the live API refuses the old one
    live = ApiKey.objects.filter(organization__slug="demo", name="demo", revoked_at__isnull=True)
    assert [api_key.prefix for api_key in live] == [new_key[: len(live[0].prefix)]]
    refused = httpx.get(f"{stack.api_url}/models", headers={"Authorization": f"Bearer {old_key}"})
    assert (refused.status_code, refused.json()) == (
        401,
        {
            "error": {
                "message": "Incorrect, revoked or expired API key provided.",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        },
    )
    accepted = httpx.get(f"{stack.api_url}/models", headers={"Authorization": f"Bearer {new_key}"})
    assert (accepted.status_code, [model["id"] for model in accepted.json()["data"]]) == (200, ["echo"])
    # and the example it prints works as printed, on the server's address
    printed = second.getvalue()
    [example] = [line.strip() for line in printed.splitlines() if line.strip().startswith("curl ")]
    words = shlex.split(example)
    headers = dict(words[at + 1].split(": ", 1) for at, word in enumerate(words) if word == "-H")
    tried = httpx.post(words[-1], headers=headers, content=words[words.index("-d") + 1])
    assert (tried.status_code, tried.json()["choices"][0]["message"]["content"]) == (
        200,
        "You said: hi\n(1 message in context)",
    )
    # and it says how to get a new key and a new admin password
    assert "A new demo key: run this again (make run does); the key printed before is revoked." in printed
    assert "A new admin password: .venv/bin/python manage.py changepassword demo-admin" in printed


def test_an_organization_added_in_the_admin_gets_its_defaults(admin_client):
    response = admin_client.post(
        "/admin/accounts/organization/add/",
        {
            "slug": "from-admin",
            "name": "From admin",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:500]
    organization = Organization.objects.get(slug="from-admin")
    assert organization.automation.auto_create_sessions is True
    assert Agent.objects.filter(organization=organization, slug="echo").exists()


def test_the_admin_validates_an_agents_backend_configuration(admin_client):
    organization = organization_create(slug="admin-agents")
    agent = Agent.objects.get(organization=organization, slug="echo")
    form = {
        "organization": organization.pk,
        "slug": "echo",
        "name": "Echo",
        "backend": "echo",
        "backend_config": '{"delay_seconds": "soon"}',
        "system_prompt": "",
        "default_params": "{}",
        "tools": "[]",
        "max_tool_steps": 5,
        "enabled": "on",
    }
    refused = admin_client.post(f"/admin/agents/agent/{agent.pk}/change/", form)
    assert refused.status_code == 200
    assert b"delay_seconds: A valid number is required." in refused.content
    assert Agent.objects.get(pk=agent.pk).backend_config == {}
    accepted = admin_client.post(
        f"/admin/agents/agent/{agent.pk}/change/", {**form, "backend_config": '{"delay_seconds": 1}'}
    )
    assert accepted.status_code == 302
    assert Agent.objects.get(pk=agent.pk).backend_config == {"delay_seconds": 1.0}
