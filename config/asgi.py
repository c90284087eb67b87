import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")
django.setup(set_prefix=False)

# Django's handler, authenticating and capping bodies before reading them (needs the apps loaded).
from config.asgi_handler import ParleyASGIHandler  # noqa: E402

application = ParleyASGIHandler()
