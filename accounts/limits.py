"""Limits per API key and per organization: requests per minute, tokens per day, concurrent turns.

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

Checking and taking a slot is one Lua script (Redis time, every scope at once, nothing taken
unless everything passes), so concurrent requests on any number of processes can't overshoot. The
`{o42}` hash tag keeps all of an organization's keys in one slot of a Redis Cluster."""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from django.conf import settings

from config.errors import InsufficientQuota, RateLimited

if TYPE_CHECKING:
    import redis

    from accounts.models import ApiKey, Organization

logger = logging.getLogger(__name__)

WINDOW_MS = 60_000
# A turn's slot outlives its runner's lease renewals (every third of PARLEY_TURN_LEASE_SECONDS).
SLOT_LEASE_FACTOR = 2
# How long the first settlement of a turn is remembered; retries come within seconds or minutes.
SETTLED_TTL_SECONDS = 3600
TOKENS_TTL_SECONDS = 2 * 86400


@dataclass(frozen=True)
class Scope:
    """What a limit applies to: an organization or one of its API keys, with its limits."""

    organization_id: int
    kind: str  # "organization" | "api_key"
    id: int
    label: str = ""
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    concurrent_turns: int | None = None

    @property
    def limited(self) -> bool:
        return any(
            limit is not None
            for limit in (self.requests_per_minute, self.tokens_per_day, self.concurrent_turns)
        )

    def key(self, name: str) -> str:
        base = f"{settings.PARLEY_LIMITS_PREFIX}:limits:{{o{self.organization_id}}}"
        own = "org" if self.kind == "organization" else f"key:{self.id}"
        return f"{base}:{own}:{name}"


def limit_scopes(*, organization: Organization, api_key: ApiKey | None) -> list[Scope]:
    """The scopes a request is held to: the organization's, and the key's when there is one."""
    scopes = [
        Scope(
            organization_id=organization.pk,
            kind="organization",
            id=organization.pk,
            label=f"organization {organization.slug}",
            requests_per_minute=organization.requests_per_minute,
            tokens_per_day=organization.tokens_per_day,
            concurrent_turns=organization.concurrent_turns,
        )
    ]
    if api_key is not None:
        scopes.append(
            Scope(
                organization_id=organization.pk,
                kind="api_key",
                id=api_key.pk,
                label=f"API key '{api_key.name}'",
                requests_per_minute=api_key.requests_per_minute,
                tokens_per_day=api_key.tokens_per_day,
                concurrent_turns=api_key.concurrent_turns,
            )
        )
    return scopes


def turn_scopes(*, organization_id: int, api_key_id: int | None) -> list[Scope]:
    """The scopes a turn counts in, without their limits: what finishing or renewing it touches."""
    scopes = [Scope(organization_id=organization_id, kind="organization", id=organization_id)]
    if api_key_id is not None:
        scopes.append(Scope(organization_id=organization_id, kind="api_key", id=api_key_id))
    return scopes


@dataclass(frozen=True)
class Refusal:
    reason: str  # "tokens" | "requests" | "turns"
    scope: Scope
    retry_after_ms: int
    holders: tuple[str, ...] = ()  # the members of a full set of turns in flight


class Counters(Protocol):
    """The shared counters. Every method is atomic on its own."""

    def reserve(self, *, scopes: list[Scope], token: str, day: date, lease_ms: int) -> Refusal | None:
        """Check every limit of every scope; when all pass, count `token` as a request and as a
        turn in flight wherever those are limited. Nothing is counted on a refusal."""

    def settle(self, *, scopes: list[Scope], token: str, turn_id: str, lease_ms: int) -> bool:
        """After the request got its turn: True when it is the first to settle that turn (its
        slot then holds the turn's id); False when another request already did (the reservation
        is given back)."""

    def give_back(self, *, scopes: list[Scope], token: str) -> None: ...

    def finish(self, *, scopes: list[Scope], turn_id: str, tokens: int, day: date) -> None:
        """Free the turn's slot and add its tokens to the day's count."""

    def renew(self, *, scopes: list[Scope], turn_id: str, lease_ms: int) -> None: ...

    def drop_holders(self, *, scope: Scope, members: Iterable[str]) -> None: ...


# --- Redis -----------------------------------------------------------------------------------------

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# KEYS: per scope, its requests set, turns set and tokens counter.
# ARGV: token, window_ms, lease_ms, then per scope its three limits (-1: none).
_RESERVE = (
    _NOW_MS
    + """
local token, window, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local scopes = #KEYS / 3
local function limit(i, n) return tonumber(ARGV[3 + (i - 1) * 3 + n]) end
for i = 1, scopes do
  local quota = limit(i, 2)
  if quota >= 0 and tonumber(redis.call('GET', KEYS[i * 3]) or '0') >= quota then
    return {'tokens', i, 0, {}}
  end
end
for i = 1, scopes do
  local rpm, key = limit(i, 1), KEYS[i * 3 - 2]
  if rpm >= 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local count = redis.call('ZCARD', key)
    if count >= rpm then
      -- A request passes again once all but rpm - 1 of the window's requests have aged out.
      local entry = redis.call('ZRANGE', key, count - rpm, count - rpm, 'WITHSCORES')
      local wait = window
      if entry[2] then wait = tonumber(entry[2]) + window - now end
      return {'requests', i, wait, {}}
    end
  end
end
for i = 1, scopes do
  local turns, key = limit(i, 3), KEYS[i * 3 - 1]
  if turns >= 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZCARD', key) >= turns then
      return {'turns', i, 1000, redis.call('ZRANGE', key, 0, -1)}
    end
  end
end
for i = 1, scopes do
  if limit(i, 1) >= 0 then
    redis.call('ZADD', KEYS[i * 3 - 2], now, token)
    redis.call('PEXPIRE', KEYS[i * 3 - 2], window)
  end
  if limit(i, 3) >= 0 then
    redis.call('ZADD', KEYS[i * 3 - 1], now + lease, token)
    redis.call('PEXPIRE', KEYS[i * 3 - 1], lease)
  end
end
return {'ok', 0, 0, {}}
"""
)

# KEYS: the turn's settled marker, then the requests sets, then the turns sets.
# ARGV: token, turn_id, number of requests sets, lease_ms, marker ttl (s).
_SETTLE = (
    _NOW_MS
    + """
local token, turn, requests, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[5])) then
  for i = 2 + requests, #KEYS do
    redis.call('ZREM', KEYS[i], token)
    redis.call('ZADD', KEYS[i], now + lease, turn)
    redis.call('PEXPIRE', KEYS[i], lease)
  end
  return 1
end
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], token) end
return 0
"""
)

# KEYS: turns sets. ARGV: turn_id, lease_ms. Only where the turn still holds a slot.
_RENEW = (
    _NOW_MS
    + """
for i = 1, #KEYS do
  if redis.call('ZADD', KEYS[i], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1]) == 1 then
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]))
  end
end
return 0
"""
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisCounters:
    def __init__(self, url: str) -> None:
        import redis

        self.client: redis.Redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._reserve = self.client.register_script(_RESERVE)
        self._settle = self.client.register_script(_SETTLE)
        self._renew = self.client.register_script(_RENEW)

    def reserve(self, *, scopes: list[Scope], token: str, day: date, lease_ms: int) -> Refusal | None:
        keys: list[str] = []
        args: list[object] = [token, WINDOW_MS, lease_ms]
        for scope in scopes:
            keys += [scope.key("requests"), scope.key("turns"), _tokens_key(scope, day)]
            args += [_or_none(scope.requests_per_minute), _or_none(scope.tokens_per_day)]
            args += [_or_none(scope.concurrent_turns)]
        reason, index, wait_ms, holders = self._reserve(keys=keys, args=args)
        if _text(reason) == "ok":
            return None
        return Refusal(
            reason=_text(reason),
            scope=scopes[int(index) - 1],
            retry_after_ms=int(wait_ms),
            holders=tuple(_text(member) for member in holders),
        )

    def settle(self, *, scopes: list[Scope], token: str, turn_id: str, lease_ms: int) -> bool:
        requests = [scope.key("requests") for scope in scopes if scope.requests_per_minute is not None]
        turns = [scope.key("turns") for scope in scopes if scope.concurrent_turns is not None]
        marker = _settled_key(scopes[0], turn_id)
        args = [token, turn_id, len(requests), lease_ms, SETTLED_TTL_SECONDS]
        return bool(self._settle(keys=[marker, *requests, *turns], args=args))

    def give_back(self, *, scopes: list[Scope], token: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        for scope in scopes:
            pipe.zrem(scope.key("requests"), token)
            pipe.zrem(scope.key("turns"), token)
        pipe.execute()

    def finish(self, *, scopes: list[Scope], turn_id: str, tokens: int, day: date) -> None:
        pipe = self.client.pipeline(transaction=True)
        for scope in scopes:
            pipe.zrem(scope.key("turns"), turn_id)
            if tokens > 0:
                pipe.incrby(_tokens_key(scope, day), tokens)
                pipe.expire(_tokens_key(scope, day), TOKENS_TTL_SECONDS)
        pipe.execute()

    def renew(self, *, scopes: list[Scope], turn_id: str, lease_ms: int) -> None:
        self._renew(keys=[scope.key("turns") for scope in scopes], args=[turn_id, lease_ms])

    def drop_holders(self, *, scope: Scope, members: Iterable[str]) -> None:
        members = list(members)
        if members:
            self.client.zrem(scope.key("turns"), *members)


def _or_none(limit: int | None) -> int:
    return -1 if limit is None else limit


def _tokens_key(scope: Scope, day: date) -> str:
    return scope.key(f"tokens:{day:%Y%m%d}")


def _settled_key(scope: Scope, turn_id: str) -> str:
    return f"{settings.PARLEY_LIMITS_PREFIX}:limits:{{o{scope.organization_id}}}:turn:{turn_id}"


# --- In process (embedded mode) ----------------------------------------------------------------------


@dataclass
class _Memory:
    requests: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> token -> time
    turns: dict[str, dict[str, float]] = field(default_factory=dict)  # key -> member -> expiry
    tokens: dict[str, int] = field(default_factory=dict)  # key (with its day) -> tokens
    settled: dict[str, float] = field(default_factory=dict)  # marker -> expiry


class InProcessCounters:
    """The same counters for one process, under a lock; what Redis does in a script."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._memory = _Memory()

    def _now_ms(self) -> float:
        return self._clock() * 1000

    def reserve(self, *, scopes: list[Scope], token: str, day: date, lease_ms: int) -> Refusal | None:
        memory = self._memory
        with self._lock:
            now = self._now_ms()
            self._forget_old_days(day)
            for scope in scopes:
                quota = scope.tokens_per_day
                if quota is not None and memory.tokens.get(_tokens_key(scope, day), 0) >= quota:
                    return Refusal(reason="tokens", scope=scope, retry_after_ms=0)
            for scope in scopes:
                if scope.requests_per_minute is None:
                    continue
                window = _live(memory.requests, scope.key("requests"), lambda at: at > now - WINDOW_MS)
                if len(window) >= scope.requests_per_minute:
                    times = sorted(window.values())
                    index = len(times) - scope.requests_per_minute
                    wait = times[index] + WINDOW_MS - now if index < len(times) else WINDOW_MS
                    return Refusal(reason="requests", scope=scope, retry_after_ms=math.ceil(wait))
            for scope in scopes:
                if scope.concurrent_turns is None:
                    continue
                held = _live(memory.turns, scope.key("turns"), lambda expiry: expiry > now)
                if len(held) >= scope.concurrent_turns:
                    return Refusal(reason="turns", scope=scope, retry_after_ms=1000, holders=tuple(held))
            for scope in scopes:
                if scope.requests_per_minute is not None:
                    memory.requests.setdefault(scope.key("requests"), {})[token] = now
                if scope.concurrent_turns is not None:
                    memory.turns.setdefault(scope.key("turns"), {})[token] = now + lease_ms
            return None

    def settle(self, *, scopes: list[Scope], token: str, turn_id: str, lease_ms: int) -> bool:
        memory = self._memory
        marker = _settled_key(scopes[0], turn_id)
        with self._lock:
            now = self._now_ms()
            first = memory.settled.get(marker, 0) <= now
            if first:
                if len(memory.settled) > 10_000:
                    memory.settled = {key: until for key, until in memory.settled.items() if until > now}
                memory.settled[marker] = now + SETTLED_TTL_SECONDS * 1000
            for scope in scopes:
                held = memory.turns.get(scope.key("turns"), {})
                if first:
                    if scope.concurrent_turns is not None:
                        held.pop(token, None)
                        memory.turns[scope.key("turns")] = {**held, turn_id: now + lease_ms}
                else:
                    memory.requests.get(scope.key("requests"), {}).pop(token, None)
                    held.pop(token, None)
            return first

    def give_back(self, *, scopes: list[Scope], token: str) -> None:
        with self._lock:
            for scope in scopes:
                self._memory.requests.get(scope.key("requests"), {}).pop(token, None)
                self._memory.turns.get(scope.key("turns"), {}).pop(token, None)

    def finish(self, *, scopes: list[Scope], turn_id: str, tokens: int, day: date) -> None:
        with self._lock:
            for scope in scopes:
                self._memory.turns.get(scope.key("turns"), {}).pop(turn_id, None)
                if tokens > 0:
                    key = _tokens_key(scope, day)
                    self._memory.tokens[key] = self._memory.tokens.get(key, 0) + tokens

    def renew(self, *, scopes: list[Scope], turn_id: str, lease_ms: int) -> None:
        with self._lock:
            now = self._now_ms()
            for scope in scopes:
                held = self._memory.turns.get(scope.key("turns"), {})
                if turn_id in held:
                    held[turn_id] = now + lease_ms

    def drop_holders(self, *, scope: Scope, members: Iterable[str]) -> None:
        with self._lock:
            held = self._memory.turns.get(scope.key("turns"), {})
            for member in members:
                held.pop(member, None)

    def _forget_old_days(self, today: date) -> None:
        suffix = f":tokens:{today:%Y%m%d}"
        if any(not key.endswith(suffix) for key in self._memory.tokens):
            self._memory.tokens = {key: n for key, n in self._memory.tokens.items() if key.endswith(suffix)}


def _live(sets: dict[str, dict[str, float]], key: str, keep: Callable[[float], bool]) -> dict[str, float]:
    members = {member: score for member, score in sets.get(key, {}).items() if keep(score)}
    if members:
        sets[key] = members
    else:
        sets.pop(key, None)
    return members


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


# --- The policy ------------------------------------------------------------------------------------


def _slot_lease_ms() -> int:
    return SLOT_LEASE_FACTOR * settings.PARLEY_TURN_LEASE_SECONDS * 1000


def _today() -> date:
    return datetime.now(UTC).date()


@dataclass
class Reservation:
    """A request's place within its limits, taken before its turn exists."""

    scopes: list[Scope]
    token: str
    counters: Counters

    def settle(self, *, turn_id: str) -> bool:
        """Bind the reservation to the request's turn. False when another request settled that
        turn first (this one reattached to it): the reservation is given back."""
        return self.counters.settle(
            scopes=self.scopes, token=self.token, turn_id=turn_id, lease_ms=_slot_lease_ms()
        )

    def give_back(self) -> None:
        self.counters.give_back(scopes=self.scopes, token=self.token)

    @property
    def holds_turn_slots(self) -> bool:
        return any(scope.concurrent_turns is not None for scope in self.scopes)


def limits_reserve(
    *, scopes: list[Scope], still_running: Callable[[list[str]], set[str]]
) -> Reservation | None:
    """Count a request against its scopes' limits, or raise RateLimited / InsufficientQuota with
    Retry-After. None when no scope has a limit (nothing to count).

    `still_running(turn_ids)` answers which of the turns holding slots are still unfinished: when
    the concurrent turns are full, holders that the database knows to be finished (their release
    was lost with a crashed process, or raced a fast turn) are dropped and the check runs again."""
    limited = [scope for scope in scopes if scope.limited]
    if not limited:
        return None
    counters = limit_counters()
    token = f"req_{uuid.uuid4().hex}"
    refusal = counters.reserve(scopes=limited, token=token, day=_today(), lease_ms=_slot_lease_ms())
    if refusal is not None and refusal.reason == "turns":
        turn_ids = [member for member in refusal.holders if member.startswith("turn_")]
        stale = set(turn_ids) - still_running(turn_ids)
        if stale:
            counters.drop_holders(scope=refusal.scope, members=stale)
            refusal = counters.reserve(scopes=limited, token=token, day=_today(), lease_ms=_slot_lease_ms())
    if refusal is not None:
        raise _refusal_error(refusal)
    return Reservation(scopes=limited, token=token, counters=counters)


def _refusal_error(refusal: Refusal) -> RateLimited:
    scope = refusal.scope
    if refusal.reason == "tokens":
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        return InsufficientQuota(
            f"You exceeded your token quota of {scope.tokens_per_day} tokens per day on {scope.label}. "
            "It renews at 00:00 UTC.",
            headers={"Retry-After": str(max(1, math.ceil((midnight - now).total_seconds())))},
        )
    seconds = max(1, math.ceil(refusal.retry_after_ms / 1000))
    if refusal.reason == "requests":
        message = (
            f"Rate limit reached for requests per minute on {scope.label}: limit "
            f"{scope.requests_per_minute}. Please try again in {seconds}s."
        )
    else:
        message = (
            f"Too many concurrent turns on {scope.label}: limit {scope.concurrent_turns}. "
            "Please try again when a turn has finished."
        )
    return RateLimited(message, headers={"Retry-After": str(seconds)})


def limits_turn_finished(*, organization_id: int, api_key_id: int | None, turn_id: str, tokens: int) -> None:
    """Free a finished turn's slot and count its tokens for the day. Never raises: a lost release
    is recovered by the slot's lease, or by the next refusal (see limits_reserve)."""
    try:
        limit_counters().finish(
            scopes=turn_scopes(organization_id=organization_id, api_key_id=api_key_id),
            turn_id=turn_id,
            tokens=tokens,
            day=_today(),
        )
    except Exception:
        logger.exception("Could not release the limits of turn %s", turn_id)


def limits_turn_renew(*, organization_id: int, api_key_id: int | None, turn_id: str) -> None:
    """Extend a running turn's slot along with its lease. Never raises."""
    try:
        limit_counters().renew(
            scopes=turn_scopes(organization_id=organization_id, api_key_id=api_key_id),
            turn_id=turn_id,
            lease_ms=_slot_lease_ms(),
        )
    except Exception:
        logger.exception("Could not renew the concurrency slot of turn %s", turn_id)


def limits_drop_turn_slot(*, organization_id: int, api_key_id: int | None, turn_id: str) -> None:
    """Free a turn's slot without counting tokens (a turn that had finished before it was settled)."""
    limits_turn_finished(organization_id=organization_id, api_key_id=api_key_id, turn_id=turn_id, tokens=0)
