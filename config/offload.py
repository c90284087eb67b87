"""CPU-bound work of a request (reading, parsing and validating its body) off the event loop.

A web process serves every tenant from one event loop: a body that takes half a second to
validate would hold up every other request of the process, /healthz included, for that long.
Such work runs in a pool of threads of its own, apart from the database threads (config/db.py),
so that a burst of large bodies neither stalls the loop nor keeps other requests from the
database. (The threads share the interpreter lock, so the loop still gets its turn every few
milliseconds.)"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings

T = TypeVar("T")


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.PARLEY_PARSE_THREADS, thread_name_prefix="parley-parse")


async def off_loop(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`func(*args, **kwargs)` in a thread of the pool; for work that touches no database."""
    return await sync_to_async(func, thread_sensitive=False, executor=_executor())(*args, **kwargs)
