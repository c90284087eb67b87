"""Fixtures of the fault tests: the PostgreSQL and Redis servers of their own and the production
stack against them, started once for the package (one stack at a time: whatever recovers a turn
there is that stack's own recovery), and the pytest process's read access to that database (the
alias FAULTS_DB)."""

from __future__ import annotations

from collections.abc import Iterator

import dj_database_url
import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from tests.faults.stack import (
    FAULTS_DB,
    WORKER_CONCURRENCY,
    Backing,
    FaultStack,
    backing_close,
    backing_start,
    create_echo_agent,
    fault_stack_start,
    fault_stack_stop,
)


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


@pytest.fixture(scope="session")
def fault_stack(backing: Backing) -> Iterator[FaultStack]:
    stack = fault_stack_start(backing, concurrency=WORKER_CONCURRENCY)
    # Echo agents that answer a word every 0.15 s (about 2 s for the tests' questions) and 0.3 s.
    create_echo_agent(stack, "slow", chunk_delay_seconds=0.15)
    create_echo_agent(stack, "slower", chunk_delay_seconds=0.3)
    try:
        yield stack
    finally:
        fault_stack_stop(stack)
