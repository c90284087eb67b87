import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")

application = get_asgi_application()

if settings.PARLEY_EXECUTOR == "inline":
    # The embedded mode has no celery beat: the web process runs the periodic work itself.
    from sessions.periodic import periodic_work_start

    periodic_work_start()
