import gc
import os
import sys
from importlib import import_module

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.embedded")
django.setup(set_prefix=False)

# Django's handler, authenticating and capping bodies before reading them (needs the apps loaded).
from django.conf import settings  # noqa: E402

from config.asgi_handler import ParleyASGIHandler  # noqa: E402
from config.offload import parse_processes_warm  # noqa: E402
from sessions.periodic import periodic_work_start  # noqa: E402

application = ParleyASGIHandler()

# Every view imported now rather than by the first request, on the event loop; then what start-up
# made is left out of garbage collection: it lives as long as the process, and a full collection,
# which stops every thread and the event loop with it, would go through all of it (half a second
# under load, in the middle of other tenants' requests) instead of what requests made since.
import_module(settings.ROOT_URLCONF)
gc.freeze()
parse_processes_warm()
# The event loop shares the interpreter lock with the threads that parse large bodies and call the
# database: each time it wants the lock back it may wait a switch interval per busy thread ahead of
# it. 1 ms instead of 5 keeps the loop, and every other tenant's request, answering in between
# (measured with four of the largest requests at once: bench/large_requests.py).
sys.setswitchinterval(0.001)

if settings.PARLEY_EXECUTOR == "inline":
    # The embedded mode has no celery beat: the web process runs the periodic work itself.
    periodic_work_start()
