"""Shared fixtures. The run mode under test is chosen by PARLEY_TEST_STACK (see
config/settings/test.py): `make test` runs the suite once per mode. Tests that talk to the live
stack use the `stack` fixture; tests that don't run in the embedded pass only."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from accounts.models import ApiKey, Membership, Organization, User
from accounts.services import api_key_create, organization_create
from sessions.models import Message, Session, Turn
from tests import fakes, oidc_provider
from tests.fakes import FakeServer
from tests.live import Stack, database_url, running_stack
from tests.oidc_provider import OidcListener, OidcProvider

STACK = os.environ.get("PARLEY_TEST_STACK", "embedded")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if STACK == "embedded":
        keep = [item for item in items if item.get_closest_marker("production_only") is None]
    else:
        # The production pass runs what depends on the run mode; the rest ran in the embedded pass.
        keep = [
            item
            for item in items
            if "stack" in getattr(item, "fixturenames", ()) or item.get_closest_marker("production_only")
        ]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    return f"parley run mode under test: {STACK}"


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker) -> Iterator[None]:
    """The test database, created once per run for every test (pytest-django's own fixture only
    creates it for tests marked django_db, which would also wrap them in transactions)."""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=0, interactive=False, aliases={"default"}, serialized_aliases=set()
        )
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0)


@pytest.fixture(autouse=True)
def _database(django_db_setup, django_db_blocker) -> Iterator[None]:
    # Live servers in other processes read what the tests write, so the tests work outside
    # transactions. Each test makes its own organizations, so tests don't see each other's data.
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeServer]:
    server = fakes.start(fakes.UpstreamHandler)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_webhook() -> Iterator[FakeServer]:
    server = fakes.start(fakes.WebhookHandler)
    yield server
    server.stop()


# The live servers sign JWTs with this key, so tests can forge tokens with it (expired ones) or
# without it (another key).
JWT_SIGNING_KEY = "parley-tests-jwt-signing-key-0123456789abcdef"
# Upstream keys that the live servers' operator offers to agents as `api_key_env`: one by the
# PARLEY_UPSTREAM_KEY_ prefix, one listed in PARLEY_UPSTREAM_KEY_ENVS.
UPSTREAM_KEY_BY_PREFIX = ("PARLEY_UPSTREAM_KEY_TESTS", f"sk-prefixed-{uuid.uuid4().hex}")
UPSTREAM_KEY_LISTED = ("TEST_OFFERED_UPSTREAM_KEY", f"sk-listed-{uuid.uuid4().hex}")


@pytest.fixture(scope="session")
def oidc_listener() -> Iterator[OidcListener]:
    """The test OIDC provider's port and client, reserved before the stack starts so that the
    stack is configured with them (the provider itself starts in `oidc`)."""
    listener = oidc_provider.reserve()
    yield listener
    listener.sock.close()


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, fake_upstream, fake_webhook, oidc_listener) -> Iterator[Stack]:
    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    log_dir = Path(tempfile.mkdtemp(prefix="parley-test-logs-"))
    shared = {"PARLEY_SECRETS_KEY": settings.PARLEY_SECRETS_KEY}
    shared.update(oidc_listener.parley_env())
    # Sign-in tests hold a browser session over plain HTTP on loopback.
    shared.update(PARLEY_JWT_SIGNING_KEY=JWT_SIGNING_KEY, SECURE_COOKIES="false")
    shared.update([UPSTREAM_KEY_BY_PREFIX, UPSTREAM_KEY_LISTED])
    shared["PARLEY_UPSTREAM_KEY_ENVS"] = UPSTREAM_KEY_LISTED[0]
    with running_stack(STACK, db_url, settings.RUN_ID, log_dir, shared) as live:
        yield live


@pytest.fixture(scope="session")
def oidc(stack: Stack, oidc_listener: OidcListener) -> Iterator[OidcProvider]:
    """A real OpenID Connect provider on loopback whose client redirects to the live stack.
    Without Node.js or the npm package it skips the test, and fails it under CI=true."""
    missing = oidc_provider.missing_requirement()
    if missing:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"The OIDC login tests cannot run: {missing}.", pytrace=False)
        pytest.skip(f"OIDC provider unavailable: {missing}")
    provider = oidc_provider.start(oidc_listener, stack.url, stack.logs[-1].parent)
    yield provider
    oidc_provider.stop(provider)


@dataclass
class Tenant:
    organization: Organization
    key: str
    api_key: ApiKey


def stored_rows(tenant: Tenant) -> dict[str, int]:
    """How many sessions, turns and messages the tenant has: a refused request changes none."""
    organization = tenant.organization
    return {
        "sessions": Session.objects.filter(organization=organization).count(),
        "turns": Turn.objects.filter(organization=organization).count(),
        "messages": Message.objects.filter(session__organization=organization).count(),
    }


def make_tenant(prefix: str = "org") -> Tenant:
    organization = organization_create(slug=f"{prefix}-{uuid.uuid4().hex[:10]}")
    issued = api_key_create(organization=organization, name="test")
    return Tenant(organization=organization, key=issued.secret, api_key=issued.api_key)


@pytest.fixture
def tenant() -> Tenant:
    """The organization a test acts as."""
    return make_tenant("acme")


@pytest.fixture
def other_tenant() -> Tenant:
    """Another organization, whose objects must look missing to `tenant`."""
    return make_tenant("globex")


@dataclass
class Person:
    """A user with a role in a tenant's organization, and the password to sign in with."""

    user: User
    password: str
    role: str
    organization: Organization


def live_password_hash(password: str) -> str:
    """A hash the live servers can check: theirs are production's hashers, not the tests' MD5;
    PBKDF2 with few iterations keeps signing in quick."""
    hasher = PBKDF2PasswordHasher()
    return hasher.encode(password, hasher.salt(), iterations=1000)


def make_person(tenant: Tenant, role: str) -> Person:
    password = f"pw-{uuid.uuid4().hex}"
    user = User.objects.create(
        username=f"{role}-{uuid.uuid4().hex[:10]}",
        email=f"{role}-{uuid.uuid4().hex[:10]}@example.com",
        password=live_password_hash(password),
        default_organization=tenant.organization,
    )
    Membership.objects.create(user=user, organization=tenant.organization, role=role)
    return Person(user=user, password=password, role=role, organization=tenant.organization)


def make_key(tenant: Tenant, scopes: list[str], **fields) -> str:
    """A key of the tenant with only these scopes; the secret."""
    return api_key_create(organization=tenant.organization, name="scoped", scopes=scopes, **fields).secret


@pytest.fixture
def org_owner(tenant: Tenant) -> Person:
    return make_person(tenant, Membership.Role.OWNER)


@pytest.fixture
def org_admin(tenant: Tenant) -> Person:
    return make_person(tenant, Membership.Role.ADMIN)


@pytest.fixture
def org_member(tenant: Tenant) -> Person:
    return make_person(tenant, Membership.Role.MEMBER)


@pytest.fixture
def outsider(other_tenant: Tenant) -> Person:
    """The owner of another organization."""
    return make_person(other_tenant, Membership.Role.OWNER)


@pytest.fixture
def client(stack: Stack, tenant: Tenant) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_url, api_key=tenant.key, max_retries=0, timeout=30)


@pytest.fixture
def async_client(stack: Stack, tenant: Tenant) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.api_url, api_key=tenant.key, max_retries=0, timeout=30)
