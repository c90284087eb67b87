"""CPU-bound work of a request (reading, parsing and validating its body) off the event loop.

A web process serves every tenant from one event loop: a body that takes half a second to
validate would hold up every other request of the process, /healthz included, for that long.

- `off_loop` runs such work in a pool of threads of its own, apart from the database threads
  (config/db.py), so that a burst of bodies neither stalls the loop nor keeps other requests
  from the database. The threads share the interpreter lock with the loop, which gets its turn
  between their steps, but not inside one C call: `json.loads` of a 4 MiB body holds the lock
  for tens of milliseconds at a stretch.
- `off_process` runs it in a pool of processes (PARLEY_PARSE_PROCESSES) that hold no lock of
  the web process's: only the bytes go out and the parsed result comes back. It costs a
  millisecond or two of copying, so the views send only large bodies there
  (PARLEY_PARSE_PROCESS_MIN_BYTES)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import cache, partial
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Added to a parsing process's CPU niceness (the web process's own is left as it is).
PARSE_PROCESS_NICENESS = 10
_processes: ProcessPoolExecutor | None = None


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=settings.PARLEY_PARSE_THREADS, thread_name_prefix="parley-parse")


async def off_loop(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`func(*args, **kwargs)` in a thread of the pool; for work that touches no database."""
    return await sync_to_async(func, thread_sensitive=False, executor=_executor())(*args, **kwargs)


def _process_start(settings_module: str) -> None:
    # A child is spawned (not forked: the web process has threads and an event loop), so it sets
    # Django up itself, with the web process's settings. One tenant's large bodies come second to
    # the event loop, which answers every tenant: on a busy machine the web process gets the CPU
    # first.
    os.nice(PARSE_PROCESS_NICENESS)
    # Gone with the web process, however it ended: a pool's processes outlive a parent that was
    # killed (each holds its task queue's writing end too, so it never reads the end of it).
    threading.Thread(target=_exit_with_parent, daemon=True, name="parley-parent-watch").start()
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup(set_prefix=False)


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
    os._exit(0)


def parse_processes() -> ProcessPoolExecutor | None:
    """The web process's pool of parsing processes, started on first use; None when
    PARLEY_PARSE_PROCESSES is 0."""
    global _processes
    if _processes is None and settings.PARLEY_PARSE_PROCESSES > 0:
        _processes = ProcessPoolExecutor(
            max_workers=settings.PARLEY_PARSE_PROCESSES,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_start,
            initargs=(os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.embedded"),),
        )
    return _processes


def parse_processes_warm() -> None:
    """Start the pool's processes now (they take about a second to set Django up), so that the
    first large body does not wait for them."""
    pool = parse_processes()
    if pool is not None:
        for _ in range(settings.PARLEY_PARSE_PROCESSES):
            pool.submit(int)


async def off_process(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`func(*args, **kwargs)` in a process of the pool: `func` is importable by name, and its
    arguments, result and exceptions pickle. Without a pool, or when a process of it died (the
    pool then starts again, for the next calls), in a thread of `off_loop`'s."""
    global _processes
    pool = parse_processes()
    if pool is None:
        return await off_loop(func, *args, **kwargs)
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, partial(func, *args, **kwargs))
    except BrokenProcessPool:
        logger.warning("A parsing process died; the pool starts again.")
        if _processes is pool:
            _processes = None
            parse_processes_warm()
        return await off_loop(func, *args, **kwargs)
