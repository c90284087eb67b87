import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")

app = Celery("parley")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# `celery -A config beat` sends the periodic tasks of settings.CELERY_BEAT_SCHEDULE (turn
# recovery, the idle-session sweep). The schedule is code, not state: beat keeps it in memory
# and writes no file. More than one beat process is harmless: every periodic task is idempotent.
app.conf.beat_scheduler = "celery.beat:Scheduler"
