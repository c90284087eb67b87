import os

from celery import Celery

from config.env import env_float

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")

app = Celery("parley")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# `celery -A config beat` sends these. The schedule is code, not state: beat keeps it in memory
# and writes no file. More than one beat process is harmless: every periodic task is idempotent.
IDLE_SWEEP_SECONDS = env_float("PARLEY_IDLE_SWEEP_SECONDS", 60.0)
app.conf.beat_scheduler = "celery.beat:Scheduler"
app.conf.beat_schedule = {
    "delete-idle-sessions": {
        "task": "parley.delete_idle_sessions",
        "schedule": IDLE_SWEEP_SECONDS,
        # A sweep that waited longer than the interval (no worker up) is superseded by the next.
        "options": {"expires": IDLE_SWEEP_SECONDS},
    },
}
