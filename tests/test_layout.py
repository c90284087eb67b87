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


def test_production_settings_refuse_the_default_secret():
    result = _django_setup({})
    assert result.returncode != 0
    assert "Set SECRET_KEY to a random value" in result.stderr


def test_production_settings_refuse_debug():
    result = _django_setup({"SECRET_KEY": "s" * 50, "DEBUG": "true"})
    assert result.returncode != 0
    assert "DEBUG must be off in production" in result.stderr


def test_production_settings_start_when_secure():
    result = _django_setup({"SECRET_KEY": "s" * 50, "DEBUG": "false"})
    assert result.returncode == 0, result.stderr
