"""Database work from async code.

Under ASGI, Django gives each request a thread of its own for sync code, and with it a database
connection that it keeps until the response ends, so a thousand open event streams would hold a
thousand connections. Async code here calls the ORM through `db_call` instead: a bounded pool of
threads that hands each connection back (to the connection pool, on PostgreSQL) after every call."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

T = TypeVar("T")


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.PARLEY_DB_THREADS, thread_name_prefix="parley-db")


def _run_and_release(func: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return func(*args, **kwargs)
    finally:
        connections.close_all()


async def db_call(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await sync_to_async(_run_and_release, thread_sensitive=False, executor=_executor())(
        func, args, kwargs
    )
