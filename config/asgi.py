import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")
django.setup(set_prefix=False)

# Django's handler, authenticating and capping bodies before reading them (needs the apps loaded).
from django.conf import settings  # noqa: E402

from config.asgi_handler import ParleyASGIHandler  # noqa: E402
from sessions.periodic import periodic_work_start  # noqa: E402

application = ParleyASGIHandler()

if settings.PARLEY_EXECUTOR == "inline":
    # The embedded mode has no celery beat: the web process runs the periodic work itself.
    periodic_work_start()
