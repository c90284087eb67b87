import os

from celery import Celery
from celery.signals import worker_process_init
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")

# Celery's Django fixup, but keeping each worker process's pool of connections (config/celery_fixup.py).
app = Celery("parley", fixups=["config.celery_fixup:fixup"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# `celery -A config beat` sends the periodic tasks of settings.CELERY_BEAT_SCHEDULE (turn
# recovery, the idle-session sweep). The schedule is code, not state: beat keeps it in memory
# and writes no file. More than one beat process is harmless: every periodic task is idempotent.
app.conf.beat_scheduler = "celery.beat:Scheduler"


@worker_process_init.connect
def _lower_cpu_priority(**_: object) -> None:
    # Where workers and web processes share cores, a worker's process (a turn) comes second to the
    # web process's event loop, which answers every tenant's requests, /healthz and streams: one
    # tenant's heavy turns then do not delay the others' requests (bench/large_requests.py).
    if settings.PARLEY_WORKER_NICENESS:
        os.nice(settings.PARLEY_WORKER_NICENESS)
