from __future__ import annotations

from celery import shared_task

from sessions.executors import EXECUTE_TURN
from sessions.recovery import turns_recover
from sessions.runner import run_turn_job
from sessions.services import sessions_delete_idle


@shared_task(name=EXECUTE_TURN, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_turn(turn_id: str) -> None:
    """Idempotent: a turn that is finished, or running elsewhere, is left alone. A delivery that
    finds the turn still leased (Celery redelivers at once when a worker dies) changes nothing;
    recovery hands the turn over again once its lease has expired."""
    run_turn_job(turn_id)


@shared_task(name="parley.recover_turns", ignore_result=True)
def recover_turns() -> dict[str, int]:
    """Run by celery beat (settings.CELERY_BEAT_SCHEDULE). Idempotent, and safe to run from two
    beats at once (sessions/recovery.py)."""
    return turns_recover().counts()


@shared_task(name="parley.delete_idle_sessions", ignore_result=True)
def delete_idle_sessions() -> int:
    """Run by celery beat (settings.CELERY_BEAT_SCHEDULE). Idempotent: a second run, or a second
    beat process running it at the same time, deletes nothing more."""
    return sessions_delete_idle()
