"""Brute force on password sign-in (POST /v1/auth/token): failed attempts are counted per
username and per client address in fixed windows, in Django's cache (Redis in production, so
that every web process counts together). Past the limit the endpoint answers 429 with
Retry-After before it checks the password at all. Successful sign-ins are not counted, so a
busy office behind one address is not locked out by its own users."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from config.errors import RateLimited


@dataclass(frozen=True)
class _Window:
    key: str
    limit: int


def _windows(*, username: str, client_address: str) -> list[_Window]:
    window = settings.PARLEY_SIGNIN_WINDOW_SECONDS
    bucket = int(time.time() // window)
    # Hashed: a cache key holds no username, and any username fits a key's charset and length.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [
        _Window(f"signin-fail:user:{name}:{bucket}", settings.PARLEY_SIGNIN_FAILURES_PER_USERNAME),
        _Window(f"signin-fail:addr:{client_address}:{bucket}", settings.PARLEY_SIGNIN_FAILURES_PER_ADDRESS),
    ]


def _retry_after() -> int:
    window = settings.PARLEY_SIGNIN_WINDOW_SECONDS
    return max(1, int(window - time.time() % window))


def signin_attempt_check(*, username: str, client_address: str) -> None:
    """Refuse the attempt (429) when the username or the address failed too often lately."""
    for window in _windows(username=username, client_address=client_address):
        if (cache.get(window.key) or 0) >= window.limit:
            raise RateLimited(
                "Too many failed sign-in attempts. Try again later.",
                code="too_many_signin_attempts",
                headers={"Retry-After": str(_retry_after())},
            )


def signin_failure_record(*, username: str, client_address: str) -> None:
    for window in _windows(username=username, client_address=client_address):
        # add() starts the window's count (a no-op when it exists); incr() is atomic in Redis.
        cache.add(window.key, 0, timeout=settings.PARLEY_SIGNIN_WINDOW_SECONDS + 1)
        try:
            cache.incr(window.key)
        except ValueError:  # expired between add() and incr()
            cache.add(window.key, 1, timeout=settings.PARLEY_SIGNIN_WINDOW_SECONDS + 1)
