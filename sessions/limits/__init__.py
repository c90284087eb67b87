"""Limits per API key and per organization: requests per minute, tokens per day, concurrent turns.

The API, called explicitly by the turn's services: the submission reserves a request's place
(`limits_reserve`), binds it to the turn it made (`limits_bind`) or gives it back when it made
none (`limits_release`); the runner renews a running turn's slot with its lease
(`limits_renew`); the usage record of a finished turn frees it and counts its tokens
(`limits_turn_finished`). The rules are in policy.py, the counters in counters_redis.py and
counters_memory.py.

What is counted: chat completion requests that start a turn (every chat route, NLX included);
other API calls (sessions, agents, keys, usage) are not. A request that fails validation, names
an unknown model or reattaches to an earlier turn (an Idempotency-Key or a retry the server
recognises) gives its count back.

Both the key's limits and its organization's apply; a user signed in with a JWT (no key) is held
to the organization's. A null limit is no limit; a scope with no limit at all costs nothing.

The counters live in Redis (REDIS_URL), so that every web process and worker on every machine
shares them; without Redis (the embedded mode: one process by design) an in-process counter with
the same interface does the same. In Redis, for organization 42 and its key 17:

- `{prefix}:limits:{o42}:key:17:requests`: a sorted set of the requests of the last minute (a
  sliding window, scored by their time in ms);
- `{prefix}:limits:{o42}:key:17:turns`: a sorted set of the turns in flight, scored by when their
  lease runs out (the runner renews it): a process that dies holding a slot does not hold it for
  more than a lease, and a refusal first drops holders the database knows to be finished;
- `{prefix}:limits:{o42}:key:17:tokens:20250131`: the tokens (prompt + completion) of the turns
  that finished that UTC day;
- `{prefix}:limits:{o42}:turn:{turn_id}`: set by the first request that settles a turn, so that a
  second request answered by the same turn gives its count back.

The `{o42}` hash tag keeps all of an organization's keys in one slot of a Redis Cluster. (The
`limits` library counts windows of one key at a time; the check here takes a request and a turn
slot in every scope at once or nothing, which is why it is one script of its own.)"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from sessions.limits.counters_memory import InProcessCounters
from sessions.limits.counters_redis import RedisCounters
from sessions.limits.policy import (
    Counters,
    Scope,
    limit_scopes,
    refusal_error,
    slot_lease_ms,
    today,
    turn_scopes,
)
from sessions.models import Turn

if TYPE_CHECKING:
    from accounts.models import ApiKey, Organization

__all__ = [
    "InProcessCounters",
    "RedisCounters",
    "Reservation",
    "Scope",
    "limits_bind",
    "limits_release",
    "limits_renew",
    "limits_reserve",
    "limits_turn_finished",
]

logger = logging.getLogger(__name__)

_counters: Counters | None = None
_counters_lock = threading.Lock()


def limit_counters() -> Counters:
    """The process's counters: Redis when REDIS_URL is set, else in process. Made once, under a
    lock: two threads must not each count in counters of their own."""
    global _counters
    if _counters is None:
        with _counters_lock:
            if _counters is None:
                _counters = RedisCounters(settings.REDIS_URL) if settings.REDIS_URL else InProcessCounters()
    return _counters


@dataclass
class Reservation:
    """A request's place within its limits, taken before its turn exists."""

    scopes: list[Scope]
    token: str
    counters: Counters

    @property
    def holds_turn_slots(self) -> bool:
        return any(scope.concurrent_turns is not None for scope in self.scopes)


def limits_reserve(*, organization: Organization, api_key: ApiKey | None) -> Reservation | None:
    """Count a request against the organization's and the key's limits, or raise RateLimited /
    InsufficientQuota with Retry-After; nothing is counted on a refusal. None when no scope has a
    limit (nothing to count).

    The check and the count are one atomic step, so that concurrent requests on any number of
    servers cannot overshoot. When the concurrent turns are full, holders that the database knows
    to be finished (their release was lost with a crashed process, or raced a fast turn) are
    dropped and the check runs again."""
    scopes = [scope for scope in limit_scopes(organization=organization, api_key=api_key) if scope.limited]
    if not scopes:
        return None
    counters = limit_counters()
    token = f"req_{uuid.uuid4().hex}"
    refusal = counters.reserve(scopes=scopes, token=token, day=today(), lease_ms=slot_lease_ms())
    if refusal is not None and refusal.reason == "turns":
        turn_ids = [member for member in refusal.holders if member.startswith("turn_")]
        stale = set(turn_ids) - _still_running(turn_ids)
        if stale:
            counters.drop_holders(scope=refusal.scope, members=stale)
            refusal = counters.reserve(scopes=scopes, token=token, day=today(), lease_ms=slot_lease_ms())
    if refusal is not None:
        raise refusal_error(refusal)
    return Reservation(scopes=scopes, token=token, counters=counters)


def limits_bind(reservation: Reservation | None, *, turn: Turn) -> None:
    """Bind a request's reservation to the turn that answers it (call once the turn exists).

    A request answered by an earlier turn (an Idempotency-Key, or a retry the server recognises)
    finds that turn already counted and gives its count back, so a retry never takes a second
    slot or counts twice. Never raises: the turn runs whatever happens here, and a failure only
    leaves the reservation to expire with its window or lease."""
    if reservation is None:
        return
    try:
        first = reservation.counters.settle(
            scopes=reservation.scopes, token=reservation.token, turn_id=turn.id, lease_ms=slot_lease_ms()
        )
    except Exception:
        logger.exception("Could not settle a request's limits")
        return
    # A fast turn may have finished (and freed its slot) before the slot held its id.
    if first and reservation.holds_turn_slots and not _still_running([turn.id]):
        limits_turn_finished(turn=turn, tokens=0)


def limits_release(reservation: Reservation | None) -> None:
    """Give back the count of a request that made no turn (it failed). Never raises."""
    if reservation is None:
        return
    try:
        reservation.counters.give_back(scopes=reservation.scopes, token=reservation.token)
    except Exception:
        logger.exception("Could not settle a request's limits")


def limits_renew(*, turn: Turn) -> None:
    """Keep a running turn's concurrency slot as long as its lease (call when renewing the lease).
    Never raises."""
    try:
        limit_counters().renew(
            scopes=turn_scopes(organization_id=turn.organization_id, api_key_id=turn.api_key_id),
            turn_id=turn.id,
            lease_ms=slot_lease_ms(),
        )
    except Exception:
        logger.exception("Could not renew the concurrency slot of turn %s", turn.id)


def limits_turn_finished(*, turn: Turn, tokens: int) -> None:
    """Free a finished turn's slot and count its tokens for the day. Never raises: a lost release
    is recovered by the slot's lease, or by the next refusal (see limits_reserve)."""
    try:
        limit_counters().finish(
            scopes=turn_scopes(organization_id=turn.organization_id, api_key_id=turn.api_key_id),
            turn_id=turn.id,
            tokens=tokens,
            day=today(),
        )
    except Exception:
        logger.exception("Could not release the limits of turn %s", turn.id)


def _still_running(turn_ids: list[str]) -> set[str]:
    if not turn_ids:
        return set()
    unfinished = Turn.objects.filter(pk__in=turn_ids, status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING])
    return set(unfinished.values_list("pk", flat=True))
