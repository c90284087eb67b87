"""The periodic work that celery beat sends in production (settings.CELERY_BEAT_SCHEDULE: turn
recovery, the idle-session sweep), run by a thread of the web process in the embedded mode,
which has no beat. Each task runs in this process, as a worker would run it; running it in more
than one process at once is harmless, since every periodic task is idempotent."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connections

import sessions.tasks  # noqa: F401  (registers the tasks that the schedule names)
from config.celery import app as celery_app

logger = logging.getLogger(__name__)

_start_lock = threading.Lock()
_started = False


def periodic_work_start() -> bool:
    """Start the thread that runs the schedule, once per process; False if it already runs.
    The first run of each task comes one interval after the start."""
    global _started
    with _start_lock:
        if _started:
            return False
        _started = True
    threading.Thread(target=_run_schedule, name="parley-periodic", daemon=True).start()
    return True


def _run_schedule() -> None:
    intervals = {entry["task"]: float(entry["schedule"]) for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    due = {task: time.monotonic() + seconds for task, seconds in intervals.items()}
    while True:
        time.sleep(max(0.0, min(due.values()) - time.monotonic()))
        for task, seconds in intervals.items():
            if time.monotonic() >= due[task]:
                _run(task)
                due[task] = time.monotonic() + seconds


def _run(task: str) -> None:
    try:
        celery_app.tasks[task]()
    except Exception:
        logger.exception("Periodic task %s failed", task)
    finally:
        connections.close_all()  # this thread's own: back to the pool until the next run
