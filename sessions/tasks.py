from __future__ import annotations

from celery import shared_task

from sessions.executors import run_turn_job


@shared_task(name="parley.execute_turn", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_turn(turn_id: str) -> None:
    """Idempotent: a turn that is finished, or running elsewhere, is left alone."""
    run_turn_job(turn_id)
