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
from django.db import connection

from accounts.models import ApiKey, Organization
from accounts.services import api_key_create, organization_create
from tests import fakes
from tests.fakes import FakeServer
from tests.live import Stack, database_url, running_stack

STACK = os.environ.get("PARLEY_TEST_STACK", "embedded")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if STACK == "embedded":
        return
    # The production pass runs what depends on the run mode; the rest ran in the embedded pass.
    keep = [item for item in items if "stack" in getattr(item, "fixturenames", ())]
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


@pytest.fixture(scope="session")
def stack(django_db_setup, django_db_blocker, fake_upstream, fake_webhook) -> Iterator[Stack]:
    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    log_dir = Path(tempfile.mkdtemp(prefix="parley-test-logs-"))
    shared = {"PARLEY_SECRETS_KEY": settings.PARLEY_SECRETS_KEY}
    with running_stack(STACK, db_url, settings.RUN_ID, log_dir, shared) as live:
        yield live


@dataclass
class Tenant:
    organization: Organization
    key: str
    api_key: ApiKey


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


@pytest.fixture
def client(stack: Stack, tenant: Tenant) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_url, api_key=tenant.key, max_retries=0, timeout=30)


@pytest.fixture
def async_client(stack: Stack, tenant: Tenant) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=stack.api_url, api_key=tenant.key, max_retries=0, timeout=30)
