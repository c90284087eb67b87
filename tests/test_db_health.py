"""The PostgreSQL pool's check of a connection it hands out (config/db_health.py): no round trip
for a healthy idle connection, and a connection whose server process ended is refused."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection
from psycopg_pool import ConnectionPool

from config.db_health import pooled_connection_check


def fresh_connection() -> psycopg.Connection:
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


@pytest.mark.production_only
@pytest.mark.django_db
def test_a_healthy_idle_connection_passes_without_a_round_trip(tmp_path):
    with fresh_connection() as checked, (tmp_path / "libpq.trace").open("w+") as trace:
        checked.execute("SELECT 1")
        # libpq's trace writes down every protocol message the connection sends or receives
        checked.pgconn.trace(trace.fileno())
        pooled_connection_check(checked)
        checked.pgconn.untrace()
        trace.seek(0)
        assert trace.read() == ""
        # (the trace does see a round trip: psycopg_pool's own check makes one)
        checked.pgconn.trace(trace.fileno())
        ConnectionPool.check_connection(checked)
        checked.pgconn.untrace()
        trace.seek(0)
        assert "Query" in trace.read()


@pytest.mark.production_only
@pytest.mark.django_db
def test_a_connection_whose_server_process_ended_is_refused():
    with fresh_connection() as checked, fresh_connection() as admin:
        # given a connection whose server process was terminated while it lay idle
        pid = checked.info.backend_pid
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + 5
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() != (
            0,
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # when it is checked, then it is refused, so that the pool replaces it
        with pytest.raises(psycopg.OperationalError):
            pooled_connection_check(checked)
