import subprocess
import sys

from tests.live import ROOT


def test_platform_folder_does_not_shadow_the_standard_library():
    # given the repository root first on sys.path, as manage.py and uvicorn have it
    code = "import platform, uuid; print(platform.system()); print(uuid.uuid4().version)"
    # when
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    # then
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [platform_system(), "4"]
    assert not (ROOT / "platform" / "__init__.py").exists()


def platform_system() -> str:
    import platform

    return platform.system()


def _django_setup(env_overrides: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings.production", **env_overrides}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


PRODUCTION_ENV = {
    "DATABASE_URL": "postgres://parley@127.0.0.1:5432/parley",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def test_production_settings_refuse_the_default_secret():
    result = _django_setup(PRODUCTION_ENV)
    assert result.returncode != 0
    assert "Set SECRET_KEY to a random value" in result.stderr


def test_production_settings_refuse_debug():
    result = _django_setup({**PRODUCTION_ENV, "SECRET_KEY": "s" * 50, "DEBUG": "true"})
    assert result.returncode != 0
    assert "DEBUG must be off in production" in result.stderr


def test_production_settings_refuse_sqlite_and_a_missing_redis():
    secure = {"SECRET_KEY": "s" * 50}
    no_database = _django_setup({**secure, "REDIS_URL": PRODUCTION_ENV["REDIS_URL"]})
    sqlite = _django_setup({**secure, **PRODUCTION_ENV, "DATABASE_URL": "sqlite:///parley.sqlite3"})
    no_redis = _django_setup({**secure, "DATABASE_URL": PRODUCTION_ENV["DATABASE_URL"]})
    assert "Set DATABASE_URL to a PostgreSQL database" in no_database.stderr
    assert "Set DATABASE_URL to a PostgreSQL database" in sqlite.stderr
    assert "needs REDIS_URL" in no_redis.stderr


def test_production_settings_start_when_secure_and_default_to_celery():
    code = "import django; django.setup(); from django.conf import settings; print(settings.PARLEY_EXECUTOR)"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "s" * 50,
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, **PRODUCTION_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "celery"
