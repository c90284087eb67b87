"""Security promises that cut across endpoints: where credentials are accepted, brute force on
password sign-in, the deployment checks and the headers every answer carries."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import httpx
import pytest

from accounts.models import Membership
from tests.conftest import make_person
from tests.live import ROOT, SIGNIN_FAILURES_PER_ADDRESS, SIGNIN_FAILURES_PER_USERNAME


def from_address() -> httpx.Client:
    """A client whose connections come from an address of their own in 127.0.0.0/8, so that
    what this test counts per client address is not shared with the rest of the suite."""
    address = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def sign_in(client: httpx.Client, stack, username: str, password: str) -> httpx.Response:
    return client.post(f"{stack.api_url}/auth/token", json={"username": username, "password": password})


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {
        "error": {
            "message": "Too many failed sign-in attempts. Try again later.",
            "type": "rate_limit_error",
            "param": None,
            "code": "too_many_signin_attempts",
        }
    }
    # The window opened at the first failure of this test (seconds ago, not at a clock boundary),
    # so nearly all of its 300 seconds are left.
    assert 200 <= int(response.headers["Retry-After"]) <= 300


def test_failed_sign_ins_for_one_username_are_throttled_even_with_the_right_password(stack, tenant):
    person = make_person(tenant, Membership.Role.MEMBER)
    other = make_person(tenant, Membership.Role.MEMBER)
    with from_address() as client:
        # given: the allowed number of failures for one username
        for _ in range(SIGNIN_FAILURES_PER_USERNAME):
            wrong = sign_in(client, stack, person.user.username, "wrong")
            assert wrong.status_code == 401, wrong.text
            assert wrong.json()["error"]["code"] == "invalid_credentials"

        # when: one more attempt, even with the right password
        # then: refused before the password is checked; another username is not affected
        assert_throttled(sign_in(client, stack, person.user.username, "wrong"))
        assert_throttled(sign_in(client, stack, person.user.username.upper(), person.password))
        allowed = sign_in(client, stack, other.user.username, other.password)
        assert allowed.status_code == 200, allowed.text
        assert set(allowed.json()) == {"access", "refresh"}


def test_failed_sign_ins_from_one_address_are_throttled_across_usernames(stack, tenant):
    people = [make_person(tenant, Membership.Role.MEMBER) for _ in range(3)]
    per_person = SIGNIN_FAILURES_PER_ADDRESS // len(people)
    assert per_person < SIGNIN_FAILURES_PER_USERNAME  # the address limit is what trips
    with from_address() as client:
        for person in people:
            for _ in range(per_person):
                assert sign_in(client, stack, person.user.username, "wrong").status_code == 401

        assert_throttled(sign_in(client, stack, people[0].user.username, people[0].password))
    # Another address signs the same person in.
    with from_address() as client:
        assert sign_in(client, stack, people[0].user.username, people[0].password).status_code == 200


@pytest.mark.parametrize(
    ("where", "request_kwargs"),
    [
        ("query string", {"params": {"api_key": "{key}"}}),
        ("query string (key)", {"params": {"key": "{key}"}}),
        ("x-api-key header", {"headers": {"x-api-key": "{key}"}}),
        ("api-key header", {"headers": {"api-key": "{key}"}}),
    ],
)
def test_a_key_anywhere_but_the_authorization_header_is_refused(stack, tenant, where, request_kwargs):
    filled = {
        name: {field: value.format(key=tenant.key) for field, value in values.items()}
        for name, values in request_kwargs.items()
    }
    for method, path, body in [
        ("GET", "/models", None),
        ("POST", "/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
    ]:
        response = httpx.request(method, f"{stack.api_url}{path}", json=body, timeout=30, **filled)

        assert response.status_code == 401, (where, response.text)
        assert response.json() == {
            "error": {
                "message": "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                "type": "authentication_error",
                "param": None,
                "code": "missing_api_key",
            }
        }


def test_every_answer_carries_the_security_headers(stack, tenant):
    answers = {
        "api": httpx.get(f"{stack.api_url}/models", headers={"Authorization": f"Bearer {tenant.key}"}),
        "api error": httpx.get(f"{stack.api_url}/models"),
        "sign-in page": httpx.get(f"{stack.url}/accounts/login/"),
        "health": httpx.get(f"{stack.url}/healthz"),
    }
    for name, response in answers.items():
        assert response.headers["X-Content-Type-Options"] == "nosniff", name
        assert response.headers["X-Frame-Options"] == "DENY", name
        assert response.headers["Referrer-Policy"] == "same-origin", name
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin", name
    assert answers["sign-in page"].status_code == 200


def test_the_deployment_checks_pass_with_production_settings():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "PARLEY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="a-production-secret-key-" + "k" * 40,
        DATABASE_URL="postgres://parley@127.0.0.1:5432/parley",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    for name in ("DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_COOKIES"):
        env.pop(name, None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
