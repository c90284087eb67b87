"""Settings of the pytest process. The live servers that the tests start use the embedded or
production settings against the same database (see tests/conftest.py)."""

import os
import tempfile
from pathlib import Path

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

# pytest-django creates this database for the run; a per-run name lets two runs share a host.
_RUN = os.environ.get("PARLEY_TEST_RUN_ID", str(os.getpid()))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"parley-test-{_RUN}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"parley_test_{_RUN}"}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
