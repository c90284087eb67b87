"""Settings of the pytest process. PARLEY_TEST_STACK picks the run mode under test:
`embedded` (SQLite) or `production` (PostgreSQL, Redis, Celery). The live servers that the tests
start use that mode's own settings against the same test database (see tests/conftest.py)."""

import base64
import os
import tempfile
from pathlib import Path

STACK = os.environ.setdefault("PARLEY_TEST_STACK", "embedded")
if STACK == "production":
    os.environ["DATABASE_URL"] = os.environ.get(
        "PARLEY_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
    )
    os.environ["REDIS_URL"] = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
elif STACK == "embedded":
    os.environ["DATABASE_URL"] = "sqlite:///" + str(Path(tempfile.gettempdir()) / "parley-test.sqlite3")
    os.environ.pop("REDIS_URL", None)
else:
    raise RuntimeError("PARLEY_TEST_STACK must be 'embedded' or 'production'.")
os.environ["PARLEY_EXECUTOR"] = "inline"

from config.settings.base import *  # noqa: E402, F403
from config.settings.base import DATABASES  # noqa: E402

# A per-run test database (and queue, and channel prefix, in conftest) lets two runs share a host.
RUN_ID = os.environ.setdefault("PARLEY_TEST_RUN_ID", str(os.getpid()))
# The live servers count limits under parley-test-{RUN_ID} too (their PARLEY_CHANNEL_PREFIX).
PARLEY_LIMITS_PREFIX = f"parley-test-{RUN_ID}"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"parley-test-{RUN_ID}.sqlite3")
    }
else:
    DATABASES["default"]["TEST"] = {"NAME": f"parley_test_{RUN_ID}"}
# The pytest process itself needs no connection pool (the live servers it starts have theirs).
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
# The live servers get the same key (tests/conftest.py), so they read what the tests sealed.
PARLEY_SECRETS_KEY = base64.urlsafe_b64encode(b"parley-tests-secrets-key-32bytes").decode()
# Agents configured by the tests point at fakes on loopback, as the live servers allow too.
PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
