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
requests queued behind them would wait for minutes. The sync views that reach the database from
their own thread (signing in, tokens) follow the same rule through `database_guard` and
`DatabaseGuardedAPIView`, and share what db_call found."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from rest_framework.views import APIView

from config.errors import DATABASE_UNAVAILABLE_ERRORS, ApiError, database_unavailable, error_response

T = TypeVar("T")


class _Availability:
    """What the last call that reached a verdict found: shared by the event loop (db_call) and
    the request threads of the sync views that reach the database themselves (database_guard)."""

    def __init__(self) -> None:
        self.unreachable = False
        self.probing = False
        self.lock = threading.Lock()

    def enter(self) -> bool:
        """Whether this call is the one that tries the database again; database_unavailable at
        once while another one does."""
        with self.lock:
            if not self.unreachable:
                return False
            if self.probing:
                raise database_unavailable()
            self.probing = True
            return True

    def leave(self, probe: bool, *, reached: bool | None) -> None:
        """After a call: `reached` says whether it got to the database (None: it cannot tell)."""
        with self.lock:
            if probe:
                self.probing = False
            if reached is not None:
                self.unreachable = not reached


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
    with database_guard():
        return await sync_to_async(_run_and_release, thread_sensitive=False, executor=_executor())(
            func, args, kwargs
        )


@contextmanager
def database_guard() -> Iterator[None]:
    """The rule of db_call, and of sync code that reaches the database from its request's own thread
    (the sign-in and token views): while the database is known to be unreachable it is answered
    database_unavailable at once, but for one call at a time that tries again; a database that
    cannot be reached is database_unavailable too."""
    probe = _availability.enter()
    reached = None
    try:
        yield
    except DATABASE_UNAVAILABLE_ERRORS as exc:
        reached = False
        raise database_unavailable() from exc
    else:
        reached = True
    finally:
        _availability.leave(probe, reached=reached)


class DatabaseGuardedAPIView(APIView):
    """An APIView whose whole request, authentication included, runs under database_guard. DRF
    renders what its handlers raise before a context manager around dispatch could see it, so
    the database's failure is noted on the way through handle_exception."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            probe = _availability.enter()
        except ApiError as unavailable:
            return error_response(unavailable)
        self._database_failed = False
        response = None
        try:
            response = super().dispatch(request, *args, **kwargs)
        finally:
            reached = None if response is None else not self._database_failed
            _availability.leave(probe, reached=reached)
        return response

    def handle_exception(self, exc: Exception) -> HttpResponse:
        if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
            self._database_failed = True
        return super().handle_exception(exc)


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
