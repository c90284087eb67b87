"""Settings shared by every run mode. Everything comes from the environment; the defaults are
those of the embedded mode (SQLite, in-process executor, in-memory channel layer)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Only ever used in the embedded mode: production.py refuses to start with it.
INSECURE_DEFAULT_SECRET_KEY = "parley-embedded-insecure-secret-key-change-me"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", INSECURE_DEFAULT_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "accounts",
    "agents",
    "sessions.apps.ConversationsConfig",
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "accounts.User"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'parley.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DB_POOL", True):
    # psycopg's pool: connections are reused across requests and their number stays bounded.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": env_int("DB_POOL_MIN", 1), "max_size": env_int("DB_POOL_MAX", 20), "timeout": 30}
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and IMMEDIATE transactions let the web threads and the in-process executor write
    # concurrently without "database is locked" errors; writers queue on the busy timeout.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, channel layer, Celery -------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py's default socket timeout would cut a listener that waits longer than
                # that for the next message; the layer only wakes listeners, so capacity is a
                # generous bound, not a guarantee.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 60, "socket_connect_timeout": 5}],
                "capacity": 1000,
                "expiry": 120,
                "prefix": env_str("PARLEY_CHANNEL_PREFIX", "parley"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }

PARLEY_EXECUTOR = env_str("PARLEY_EXECUTOR", "inline")
if PARLEY_EXECUTOR not in {"inline", "celery"}:
    raise ImproperlyConfigured("PARLEY_EXECUTOR must be 'inline' or 'celery'.")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
if PARLEY_EXECUTOR == "celery" and not CELERY_BROKER_URL:
    raise ImproperlyConfigured("PARLEY_EXECUTOR=celery needs REDIS_URL (or CELERY_BROKER_URL).")
# Separate queues let several deployments (or test runs) share one broker.
CELERY_TASK_DEFAULT_QUEUE = env_str("PARLEY_CELERY_QUEUE", "parley")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Parley behaviour ------------------------------------------------------------------------
# How long a chat completion request waits for its turn before answering 504 (the turn goes on).
PARLEY_TURN_WAIT_SECONDS = env_float("PARLEY_TURN_WAIT_SECONDS", 300.0)
# How long a claimed turn stays claimed without renewal (its runner renews it every third of
# that) before another worker may take it over and listeners call the worker lost.
PARLEY_TURN_LEASE_SECONDS = env_int("PARLEY_TURN_LEASE_SECONDS", 60)
PARLEY_TURN_MAX_ATTEMPTS = env_int("PARLEY_TURN_MAX_ATTEMPTS", 3)
# A request identical to the session's last one within this window is treated as a retry of it.
PARLEY_RETRY_WINDOW_SECONDS = env_int("PARLEY_RETRY_WINDOW_SECONDS", 10)
# An event stream that hears nothing from its turn for this long ends with a turn_timeout error
# (the turn goes on; GET /v1/turns/{id}/events follows it again).
PARLEY_STREAM_IDLE_SECONDS = env_float("PARLEY_STREAM_IDLE_SECONDS", 300.0)
# An idle event stream gets a comment line this often, so that proxies keep it open.
PARLEY_SSE_KEEPALIVE_SECONDS = env_float("PARLEY_SSE_KEEPALIVE_SECONDS", 15.0)
# Threads through which async views reach the database (see config/db.py).
PARLEY_DB_THREADS = env_int("PARLEY_DB_THREADS", 8)
# Threads of the in-process executor (embedded mode).
PARLEY_INLINE_WORKERS = env_int("PARLEY_INLINE_WORKERS", 16)
PARLEY_MAX_BODY_BYTES = env_int("PARLEY_MAX_BODY_BYTES", 4 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PARLEY_MAX_BODY_BYTES

# Fernet key for secrets in agent configuration; derived from SECRET_KEY when empty.
PARLEY_SECRETS_KEY = env_str("PARLEY_SECRETS_KEY")
# Hosts and CIDR ranges that outbound calls (upstreams, webhooks, HTTP tools) may reach even
# though they are private, loopback or link-local. Empty: only public addresses.
PARLEY_EGRESS_ALLOW = env_list("PARLEY_EGRESS_ALLOW")
# Ports outbound calls may use.
PARLEY_EGRESS_PORTS = [int(port) for port in env_list("PARLEY_EGRESS_PORTS", "80,443")]

# --- HTTP and static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "var" / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "config.errors.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.server": {"level": "WARNING"}},
}
