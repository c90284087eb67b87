"""Fixtures of the fault tests: the PostgreSQL and Redis servers of their own, started once for
the package, and the pytest process's read access to that database (the alias FAULTS_DB)."""

from __future__ import annotations

from collections.abc import Iterator

import dj_database_url
import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from tests.faults.stack import FAULTS_DB, Backing, backing_close, backing_start


@pytest.fixture(scope="session")
def backing() -> Iterator[Backing]:
    started = backing_start()
    configured = connections.configure_settings(
        {
            DEFAULT_DB_ALIAS: dict(connections.settings[DEFAULT_DB_ALIAS]),
            FAULTS_DB: dj_database_url.parse(started.postgres.url),
        }
    )
    connections.settings[FAULTS_DB] = configured[FAULTS_DB]
    try:
        yield started
    finally:
        connections[FAULTS_DB].close()
        backing_close(started)
