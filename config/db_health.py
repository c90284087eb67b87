"""How the PostgreSQL connection pool checks a connection before it hands it out.

psycopg_pool's own check (`ConnectionPool.check_connection`, what Django installs for
CONN_HEALTH_CHECKS) makes a round trip to the server every time: for every `db_call` of the web
process and every database step of a turn, one more round trip than the work itself. Here the
round trip is made only when the connection has something to read while it lies idle in the
pool: a healthy idle connection has nothing, while one the server closed (a restart, a killed
session, an idle timeout) has its FATAL message or its end waiting, and is then checked and, dead,
replaced by the pool. So after the server restarted, dead connections are still replaced instead
of failing a request each (tests/faults)."""

from __future__ import annotations

import select

import psycopg
from psycopg_pool import ConnectionPool


def pooled_connection_check(connection: psycopg.Connection) -> None:
    """Raise when the connection is unusable, as psycopg_pool's `check` callbacks do."""
    if connection.closed:
        raise psycopg.OperationalError("the connection is closed")
    idle_input = select.poll()  # poll, not select: a busy process has descriptors past 1024
    idle_input.register(connection.fileno(), select.POLLIN)
    if idle_input.poll(0):
        ConnectionPool.check_connection(connection)
