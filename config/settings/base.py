"""Settings shared by every run mode. Everything comes from the environment; the defaults are
those of the embedded mode (SQLite, in-process executor, in-memory channel layer)."""

from __future__ import annotations

from datetime import timedelta
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
# Django's PostgreSQL backend, and Parley's (config/postgresql) that a pooled one runs on.
POSTGRESQL_ENGINES = ("django.db.backends.postgresql", "config.postgresql")
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that does not answer (its host gone) fails the connection attempt after this, rather
    # than never.
    DATABASES["default"]["OPTIONS"] = {"connect_timeout": env_int("DB_CONNECT_TIMEOUT", 5)}
    if env_bool("DB_POOL", True):
        # psycopg's pool: connections are reused across requests and their number stays bounded.
        # A request that gets no connection within DB_POOL_TIMEOUT (the server is down, or every
        # connection is busy) is answered 503 database_unavailable with Retry-After (config/errors.py).
        pool_timeout = env_float("DB_POOL_TIMEOUT", 5.0)
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 1),
            "max_size": env_int("DB_POOL_MAX", 20),
            "timeout": pool_timeout,
            # The pool retries a failed connection with a growing delay (1, 2, 4, ... s). Ending
            # each series of retries after this long lets the next request start a new one at once,
            # so that service resumes within seconds of the server's return, however long it was away.
            "reconnect_timeout": pool_timeout,
        }
        # Django's backend, but the pool checks each connection as it hands it out with a round
        # trip only when the server may have dropped it (config/db_health.py): after the server
        # restarted, the dead ones are replaced instead of failing a request each.
        DATABASES["default"]["ENGINE"] = "config.postgresql"
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
# Where the rate limits and quotas are counted in Redis (sessions/limits): a prefix of their
# keys, so that deployments (or test runs) can share one Redis.
PARLEY_LIMITS_PREFIX = env_str("PARLEY_LIMITS_PREFIX", env_str("PARLEY_CHANNEL_PREFIX", "parley"))

# Django's cache holds short-lived counters that every web process must share (failed sign-ins):
# Redis when there is one, else this process's memory (the embedded mode has one process).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("PARLEY_CHANNEL_PREFIX", "parley"),
    }
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
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
# Added to the CPU niceness of each Celery worker process that runs turns (config/celery.py): on
# cores shared with web processes, the web processes' event loops get the CPU first. 0: unchanged.
PARLEY_WORKER_NICENESS = env_int("PARLEY_WORKER_NICENESS", 10)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Parley behaviour ------------------------------------------------------------------------
# How long a chat completion request waits for its turn before answering 504 (the turn goes on).
PARLEY_TURN_WAIT_SECONDS = env_float("PARLEY_TURN_WAIT_SECONDS", 300.0)
# How long a claimed turn stays claimed without renewal (its runner renews it every third of
# that) before recovery hands it to another worker, as its next attempt.
PARLEY_TURN_LEASE_SECONDS = env_int("PARLEY_TURN_LEASE_SECONDS", 60)
# Claims of one turn at most: a turn whose lease expires on its last attempt is failed.
PARLEY_TURN_MAX_ATTEMPTS = env_int("PARLEY_TURN_MAX_ATTEMPTS", 3)
# How often turn recovery runs (sessions/recovery.py): it hands turns nobody works on to the
# executor again and fails those whose lease expired at the attempt cap.
PARLEY_RECOVERY_SECONDS = env_float("PARLEY_RECOVERY_SECONDS", 10.0)
# A queued turn that no worker started this long after it was handed to the executor is handed
# over again by recovery (its message may be lost); a busy pool gets one more message per turn
# at most this often.
PARLEY_TURN_REQUEUE_SECONDS = env_float("PARLEY_TURN_REQUEUE_SECONDS", 10.0)
# How often idle sessions (the automation setting session_idle_ttl) are deleted.
PARLEY_IDLE_SWEEP_SECONDS = env_float("PARLEY_IDLE_SWEEP_SECONDS", 60.0)
# The periodic work, sent by `celery -A config beat` in production and run by a thread of the web
# process in the embedded mode (sessions/periodic.py). A run that waited longer than its
# interval (no worker up) is superseded by the next; every task is idempotent, so more than one
# beat is harmless.
CELERY_BEAT_SCHEDULE = {
    "recover-turns": {
        "task": "parley.recover_turns",
        "schedule": PARLEY_RECOVERY_SECONDS,
        "options": {"expires": PARLEY_RECOVERY_SECONDS},
    },
    "delete-idle-sessions": {
        "task": "parley.delete_idle_sessions",
        "schedule": PARLEY_IDLE_SWEEP_SECONDS,
        "options": {"expires": PARLEY_IDLE_SWEEP_SECONDS},
    },
}
# The longest one call to an agent's webhook, or to an `openai` agent's upstream, may take (one
# round of a turn, its retries included), however slowly the answer trickles in: then the turn
# fails with 504 webhook_timeout or upstream_timeout (agents/bounds.py).
PARLEY_WEBHOOK_TIMEOUT_SECONDS = env_float("PARLEY_WEBHOOK_TIMEOUT_SECONDS", 120.0)
PARLEY_UPSTREAM_TIMEOUT_SECONDS = env_float("PARLEY_UPSTREAM_TIMEOUT_SECONDS", 600.0)
# A request identical to the session's last one within this window is treated as a retry of it.
PARLEY_RETRY_WINDOW_SECONDS = env_int("PARLEY_RETRY_WINDOW_SECONDS", 10)
# An event stream that hears nothing from its turn for this long ends with a turn_timeout error
# (the turn goes on; GET /v1/turns/{id}/events follows it again).
PARLEY_STREAM_IDLE_SECONDS = env_float("PARLEY_STREAM_IDLE_SECONDS", 300.0)
# An idle event stream gets a comment line this often, so that proxies keep it open.
PARLEY_SSE_KEEPALIVE_SECONDS = env_float("PARLEY_SSE_KEEPALIVE_SECONDS", 15.0)
# Threads through which async views reach the database (see config/db.py).
PARLEY_DB_THREADS = env_int("PARLEY_DB_THREADS", 8)
# Threads that parse and validate chat request bodies, off the event loop (see config/offload.py).
PARLEY_PARSE_THREADS = env_int("PARLEY_PARSE_THREADS", 8)
# Processes of each web process that parse and validate the chat bodies of at least
# PARLEY_PARSE_PROCESS_MIN_BYTES, where they hold none of the web process's interpreter lock
# (config/offload.py); 0: the threads parse every body.
PARLEY_PARSE_PROCESSES = env_int("PARLEY_PARSE_PROCESSES", 2)
PARLEY_PARSE_PROCESS_MIN_BYTES = env_int("PARLEY_PARSE_PROCESS_MIN_BYTES", 256 * 1024)
# Threads of the in-process executor (embedded mode), and how many of them one organization's
# turns may hold at once: its other turns wait for one of them to end (sessions/executors.py), so
# that one organization's slow agent leaves threads to the others.
PARLEY_INLINE_WORKERS = env_int("PARLEY_INLINE_WORKERS", 32)
PARLEY_INLINE_TURNS_PER_ORGANIZATION = env_int("PARLEY_INLINE_TURNS_PER_ORGANIZATION", 8)
if not 1 <= PARLEY_INLINE_TURNS_PER_ORGANIZATION <= PARLEY_INLINE_WORKERS:
    raise ImproperlyConfigured(
        "PARLEY_INLINE_TURNS_PER_ORGANIZATION must be from 1 to PARLEY_INLINE_WORKERS."
    )
PARLEY_MAX_BODY_BYTES = env_int("PARLEY_MAX_BODY_BYTES", 4 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = PARLEY_MAX_BODY_BYTES
# Django's ASGI handler writes a body past this size to a temporary file, from the event loop: an
# accepted body stays in memory instead (it is held whole to be parsed anyway).
FILE_UPLOAD_MAX_MEMORY_SIZE = PARLEY_MAX_BODY_BYTES
# What one chat request may hold besides its size: validation costs time per message, so their
# number bounds it (2048, as OpenAI's); a message's text is bounded too.
PARLEY_MAX_MESSAGES_PER_REQUEST = env_int("PARLEY_MAX_MESSAGES_PER_REQUEST", 2048)
PARLEY_MAX_CONTENT_CHARS = env_int("PARLEY_MAX_CONTENT_CHARS", 1024 * 1024)
# How long an Idempotency-Key names its turn (24 h, as Stripe's); an older key matches nothing.
PARLEY_IDEMPOTENCY_KEY_SECONDS = env_int("PARLEY_IDEMPOTENCY_KEY_SECONDS", 24 * 60 * 60)

# Fernet key for secrets in agent configuration; derived from SECRET_KEY when empty.
PARLEY_SECRETS_KEY = env_str("PARLEY_SECRETS_KEY")
# Environment variables that an `openai` agent may name as its `api_key_env`, besides any name
# starting with PARLEY_UPSTREAM_KEY_ (agents.secrets). No other variable of the server's
# environment (SECRET_KEY, DATABASE_URL, ...) can ever be sent to an upstream.
PARLEY_UPSTREAM_KEY_ENVS = env_list("PARLEY_UPSTREAM_KEY_ENVS")
# Hosts and CIDR ranges that outbound calls (upstreams, webhooks, HTTP tools) may reach even
# though they are private, loopback or link-local. Empty: only public addresses.
PARLEY_EGRESS_ALLOW = env_list("PARLEY_EGRESS_ALLOW")
# Ports outbound calls may use.
PARLEY_EGRESS_PORTS = [int(port) for port in env_list("PARLEY_EGRESS_PORTS", "80,443")]

# --- HTTP and static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env_str("STATIC_ROOT", str(BASE_DIR / "var" / "static"))
# WhiteNoise warns at every start when the folder is missing (before the first collectstatic).
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    # One table says who may call what (accounts/permissions.py).
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.EndpointPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, nested at most 64 deep, no NUL or lone surrogate in a string (config/inputs.py).
    "DEFAULT_PARSER_CLASSES": ["config.inputs.JsonBodyParser"],
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

# --- Users: JWT bearer tokens, sign-in through identity providers (accounts/jwt.py, oidc.py) -----
INSTALLED_APPS += [
    "rest_framework_simplejwt.token_blacklist",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.google",
    "allauth.socialaccount.providers.github",
]
MIDDLEWARE += ["allauth.account.middleware.AccountMiddleware"]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# Failed password sign-ins (POST /v1/auth/token) allowed per window (opened by the first failure),
# per username and per client address (accounts/signin_throttle.py); past them the endpoint
# answers 429 until the window ends.
PARLEY_SIGNIN_WINDOW_SECONDS = env_int("PARLEY_SIGNIN_WINDOW_SECONDS", 300)
PARLEY_SIGNIN_FAILURES_PER_USERNAME = env_int("PARLEY_SIGNIN_FAILURES_PER_USERNAME", 10)
PARLEY_SIGNIN_FAILURES_PER_ADDRESS = env_int("PARLEY_SIGNIN_FAILURES_PER_ADDRESS", 50)

PARLEY_JWT_SIGNING_KEY = env_str("PARLEY_JWT_SIGNING_KEY")
if PARLEY_JWT_SIGNING_KEY and len(PARLEY_JWT_SIGNING_KEY) < 32:
    raise ImproperlyConfigured("PARLEY_JWT_SIGNING_KEY must be at least 32 characters long.")
SIMPLE_JWT = {
    # Pinned: a token is decoded with exactly this algorithm, never with the one it names.
    "ALGORITHM": "HS256",
    "SIGNING_KEY": PARLEY_JWT_SIGNING_KEY or SECRET_KEY,
    "VERIFYING_KEY": "",
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("PARLEY_JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("PARLEY_JWT_REFRESH_DAYS", 7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    # The immutable primary key, never the username (which an operator may change).
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "sub",
    "AUTH_HEADER_TYPES": ("Bearer",),
    "LEEWAY": 0,
}

ACCOUNT_ADAPTER = "accounts.oidc.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.oidc.SocialAccountAdapter"
# After signing in in the browser, a page that trades the session for a JWT pair.
LOGIN_REDIRECT_URL = "/accounts/api-token/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
# A first sign-in through a provider creates the user and a personal organization.
PARLEY_SOCIAL_SIGNUP = env_bool("PARLEY_SOCIAL_SIGNUP", True)
SOCIALACCOUNT_AUTO_SIGNUP = True
# Starting a sign-in takes a POST with the CSRF token: another site cannot start one.
SOCIALACCOUNT_LOGIN_ON_GET = False
# Parley needs the provider's identity, not its tokens: they are not kept.
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_QUERY_EMAIL = True
# A sign-in joins an existing user by email only when the provider says it verified the address
# (allauth ignores unverified ones here) and then links the provider account to that user.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
# Parley sends no verification mail of its own: the provider's `email_verified` is recorded.
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")


def _oauth_apps(client_id_variable: str, secret_variable: str) -> list[dict]:
    client_id = env_str(client_id_variable)
    return [{"client_id": client_id, "secret": env_str(secret_variable), "key": ""}] if client_id else []


PARLEY_OIDC_SERVER_URL = env_str("PARLEY_OIDC_SERVER_URL")
PARLEY_OIDC_CLIENT_ID = env_str("PARLEY_OIDC_CLIENT_ID")
SOCIALACCOUNT_PROVIDERS = {
    "openid_connect": {
        # allauth's provider plus a nonce bound to each sign-in (accounts/oidc.py).
        "provider_class": "accounts.oidc.NonceOpenIDConnectProvider",
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                # Names the callback: /accounts/oidc/<provider_id>/login/callback/
                "provider_id": env_str("PARLEY_OIDC_PROVIDER_ID", "oidc"),
                "name": env_str("PARLEY_OIDC_NAME", "Single sign-on"),
                "client_id": PARLEY_OIDC_CLIENT_ID,
                "secret": env_str("PARLEY_OIDC_CLIENT_SECRET"),
                "settings": {
                    "server_url": PARLEY_OIDC_SERVER_URL,
                    "token_auth_method": env_str("PARLEY_OIDC_TOKEN_AUTH_METHOD", "client_secret_basic"),
                    "oauth_pkce_enabled": True,
                    # For providers that send no `email_verified` but own their domains' mail.
                    "verified_email": env_list("PARLEY_OIDC_VERIFIED_EMAIL_DOMAINS"),
                },
            }
        ]
        if PARLEY_OIDC_SERVER_URL and PARLEY_OIDC_CLIENT_ID
        else [],
    },
    "google": {
        "APPS": _oauth_apps("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET"),
        "SCOPE": ["openid", "email", "profile"],
        "OAUTH_PKCE_ENABLED": True,
    },
    "github": {
        "APPS": _oauth_apps("GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"),
        "SCOPE": ["read:user", "user:email"],
    },
}

# --- OpenAPI: /v1/openapi.json and the docs page /v1/docs (config/openapi/) ----------------------
INSTALLED_APPS += ["drf_spectacular", "drf_spectacular_sidecar"]
REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] = "config.openapi.schema.ParleyAutoSchema"
SPECTACULAR_SETTINGS = {
    "TITLE": "Parley API",
    "VERSION": "1.0.0",
    # Adds documentation-only views for the plain async views (chat completions, event streams).
    "DEFAULT_GENERATOR_CLASS": "config.openapi.generator.ParleySchemaGenerator",
    "SCHEMA_PATH_PREFIX": "",
    # OpenAPI 3.1's schemas are JSON Schema: `propertyNames` (metadata keys) and `type: [..., "null"]`.
    "OAS_VERSION": "3.1.0",
    # A field that refuses "" says so (`minLength: 1`); answers' fields that may be "" allow blanks.
    "ENFORCE_NON_BLANK_FIELDS": True,
    "SERVE_PUBLIC": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.hooks.postprocess_schema",
    ],
    "ENUM_NAME_OVERRIDES": {
        "MessageRoleEnum": "sessions.api.shapes.MESSAGE_ROLES",
        "MemberRoleEnum": "accounts.api.shapes.MEMBER_ROLES",
        "TurnStatusEnum": "sessions.api.shapes.TURN_STATUSES",
        "FunctionTypeEnum": "sessions.api.shapes.FUNCTION_TYPES",
        "ResponseFormatTypeEnum": "sessions.api.shapes.RESPONSE_FORMAT_TYPES",
        "FinishReasonEnum": "sessions.api.shapes.FINISH_REASONS",
    },
    # The docs page's scripts and styles come from drf-spectacular-sidecar, served by this server:
    # the docs work without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "displayRequestDuration": True, "filter": True},
}
# Serve the apps' static files (the docs page's, the admin's) without a collectstatic step too.
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", True)
