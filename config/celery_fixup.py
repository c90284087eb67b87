"""Celery's Django fixup, but for what it does with a pool of PostgreSQL connections between tasks.

Celery's own (celery.fixups.django) closes a prefork child's whole connection pool before and
after every task (celery/celery#10554): each turn then opened a new pool, started its threads and
waited for a new PostgreSQL connection, a new server process each time; measured, about a third of
a turn's time in the worker. Here a task's connections go back to the pool at its start and end,
as Django does at the end of each request (close_old_connections), and the pool stays open; the
pool a child inherits at fork is still closed, in on_worker_process_init, which Celery runs."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.fixups.django import DjangoFixup, DjangoWorkerFixup


class PooledDjangoWorkerFixup(DjangoWorkerFixup):
    def close_database(self, **kwargs: Any) -> None:
        # Unusable or errored connections are closed; usable ones go back to their pool.
        self._db.close_old_connections()


class PooledDjangoFixup(DjangoFixup):
    @property
    def worker_fixup(self) -> DjangoWorkerFixup:
        if self._worker_fixup is None:
            self._worker_fixup = PooledDjangoWorkerFixup(self.app)
        return self._worker_fixup

    @worker_fixup.setter
    def worker_fixup(self, value: DjangoWorkerFixup) -> None:
        self._worker_fixup = value


def fixup(app: Celery) -> PooledDjangoFixup | None:
    """Installed in place of Celery's built-in Django fixup (config/celery.py)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return None
    return PooledDjangoFixup(app).install()
