"""Liveness (/healthz) and readiness (/readyz: database, Redis, broker) for load balancers."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from rest_framework import serializers

from config.shapes import Constant


# GET and HEAD only: any other method is 405 with an `Allow` header, as for every endpoint (not
# a CSRF refusal first: nothing here changes state).
@csrf_exempt
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse(HealthSerializer({}).data)


@csrf_exempt
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database()}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis(settings.REDIS_URL)
    if settings.PARLEY_EXECUTOR == "celery":
        broker = settings.CELERY_BROKER_URL
        checks["broker"] = checks["redis"] if broker == settings.REDIS_URL else _check_redis(broker)
    ready = all(result == "ok" for result in checks.values())
    readiness = {"status": "ok" if ready else "unavailable", "checks": checks}
    return JsonResponse(ReadinessSerializer(readiness).data, status=200 if ready else 503)


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _check_redis(url: str) -> str:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


class HealthSerializer(serializers.Serializer):
    status = Constant("ok")


class ReadinessSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    checks = serializers.DictField(
        child=serializers.CharField(), help_text="`database`, `redis`, `broker`: `ok` or `error: …`."
    )
