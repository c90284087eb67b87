from __future__ import annotations

from celery import shared_task

from sessions.executors import run_turn_job
from sessions.services import sessions_delete_idle


@shared_task(name="parley.execute_turn", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_turn(turn_id: str) -> None:
    """Idempotent: a turn that is finished, or running elsewhere, is left alone."""
    run_turn_job(turn_id)


@shared_task(name="parley.delete_idle_sessions", ignore_result=True)
def delete_idle_sessions() -> int:
    """Run by celery beat (config/celery.py). Idempotent: a second run, or a second beat
    process running it at the same time, deletes nothing more."""
    return sessions_delete_idle()
