"""The production mode: PostgreSQL, Redis, Celery workers. Refuses to start insecurely."""

import os

from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int

# The production stack runs turns on Celery workers unless told otherwise.
os.environ.setdefault("PARLEY_EXECUTOR", "celery")

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, INSECURE_DEFAULT_SECRET_KEY, REDIS_URL, SECRET_KEY

if DEBUG:  # noqa: F405
    raise ImproperlyConfigured("DEBUG must be off in production.")
if SECRET_KEY == INSECURE_DEFAULT_SECRET_KEY or len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("Set SECRET_KEY to a random value of at least 32 characters.")
if "DATABASE_URL" not in os.environ or DATABASES["default"]["ENGINE"] not in POSTGRESQL_ENGINES:  # noqa: F405
    raise ImproperlyConfigured("Set DATABASE_URL to a PostgreSQL database (postgres://...).")
if not REDIS_URL:
    raise ImproperlyConfigured("Set REDIS_URL: the channel layer and the Celery broker need Redis.")

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
# Browsers only ever reach Parley over HTTPS: plain HTTP is redirected (but the probes of a load
# balancer or Kubernetes, which speak plain HTTP inside the cluster), and HSTS pins HTTPS for a
# year. Behind a TLS-terminating proxy set BEHIND_TLS_PROXY so that its requests count as HTTPS;
# SECURE_SSL_REDIRECT=false where the proxy does the redirect itself.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Preloading is the apex domain owner's irreversible choice, not a default of one service.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
