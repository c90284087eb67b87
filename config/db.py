"""Database work from async code.

Under ASGI, Django gives each request a thread of its own for sync code, and with it a database
connection that it keeps until the response ends, so a thousand open event streams would hold a
thousand connections. Async code here calls the ORM through `db_call` instead: a bounded pool of
threads that hands each connection back (to the connection pool, on PostgreSQL) after every call.
Long-running sync code that waits between database steps gives its connection back with
`release_pooled_connections`.

A database that cannot be reached is an API error here (503 database_unavailable, with
Retry-After), so that every async caller, the early authentication of the ASGI handler included,
answers it as such. Once a call found it unreachable, the calls that follow are answered so at
once while one of them at a time tries the database again: otherwise each would hold one of the
few threads for the pool's whole timeout (DB_POOL_TIMEOUT), and with many open streams the
requests queued behind them would wait for minutes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from config.errors import DATABASE_UNAVAILABLE_ERRORS, database_unavailable

T = TypeVar("T")


class _Availability:
    """What the last call that reached a verdict found. Only touched from the event loop."""

    def __init__(self) -> None:
        self.unreachable = False
        self.probing = False


_availability = _Availability()


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.PARLEY_DB_THREADS, thread_name_prefix="parley-db")


def _run_and_release(func: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return func(*args, **kwargs)
    finally:
        connections.close_all()


async def db_call(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    probe = _availability.unreachable
    if probe:
        if _availability.probing:
            raise database_unavailable()
        _availability.probing = True
    try:
        result = await sync_to_async(_run_and_release, thread_sensitive=False, executor=_executor())(
            func, args, kwargs
        )
    except DATABASE_UNAVAILABLE_ERRORS as exc:
        _availability.unreachable = True
        raise database_unavailable() from exc
    finally:
        if probe:
            _availability.probing = False
    _availability.unreachable = False
    return result


def release_pooled_connections() -> None:
    """Give this thread's database connections back to their pool, where there is one
    (PostgreSQL with DB_POOL): for code that waits long between short database steps, such as a
    turn's runner waiting on its agent, so that waiting holds no connection and many waiting
    runners cannot use up the pool. The next query takes a connection again, a matter of
    microseconds with a pool. Elsewhere (SQLite, PostgreSQL without a pool) this does nothing:
    there is no pool to run dry, and opening a connection again costs more than keeping it."""
    for connection in connections.all(initialized_only=True):
        if (
            connection.connection is not None
            and getattr(connection, "pool", None) is not None
            and not connection.in_atomic_block
        ):
            connection.close()
