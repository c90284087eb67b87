"""Brute force on password sign-in (POST /v1/auth/token): failed attempts are counted per
username and per client address, in Django's cache (Redis in production, so that every web
process counts together). A count's window opens at its first failure and lasts
PARLEY_SIGNIN_WINDOW_SECONDS: unlike windows fixed to the clock, a burst that straddles a
boundary is counted whole. Past the limit the endpoint answers 429 with Retry-After (until the
window closes) before it checks the password at all. Successful sign-ins are not counted, so a
busy office behind one address is not locked out by its own users."""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache

from config.errors import RateLimited


def _counters(*, username: str, client_address: str) -> list[tuple[str, int]]:
    # Hashed: a cache key holds no username, and any username fits a key's charset and length.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [
        (f"signin-fail:user:{name}", settings.PARLEY_SIGNIN_FAILURES_PER_USERNAME),
        (f"signin-fail:addr:{client_address}", settings.PARLEY_SIGNIN_FAILURES_PER_ADDRESS),
    ]


def signin_attempt_check(*, username: str, client_address: str) -> None:
    """Refuse the attempt (429) when the username or the address failed too often lately."""
    for key, limit in _counters(username=username, client_address=client_address):
        found = cache.get_many([key, f"{key}:closes"])
        if (found.get(key) or 0) >= limit:
            closes = found.get(f"{key}:closes") or time.time() + settings.PARLEY_SIGNIN_WINDOW_SECONDS
            raise RateLimited(
                "Too many failed sign-in attempts. Try again later.",
                code="too_many_signin_attempts",
                headers={"Retry-After": str(max(1, math.ceil(closes - time.time())))},
            )


def signin_failure_record(*, username: str, client_address: str) -> None:
    window = settings.PARLEY_SIGNIN_WINDOW_SECONDS
    for key, _limit in _counters(username=username, client_address=client_address):
        # add() opens the window (a no-op while it is open); incr() is atomic in Redis.
        if cache.add(key, 0, timeout=window):
            cache.set(f"{key}:closes", time.time() + window, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # the window closed between add() and incr()
            cache.add(key, 1, timeout=window)
