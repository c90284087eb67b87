"""The counters in Redis, shared by every web process and worker on every machine. Checking and
taking a slot is one Lua script (Redis time, every scope at once, nothing taken unless everything
passes), so concurrent requests on any number of processes can't overshoot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import redis

from sessions.limits.policy import (
    SETTLED_TTL_SECONDS,
    TOKENS_TTL_SECONDS,
    WINDOW_MS,
    Refusal,
    Scope,
    settled_key,
    tokens_key,
)

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
        self.client: redis.Redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._reserve = self.client.register_script(_RESERVE)
        self._settle = self.client.register_script(_SETTLE)
        self._renew = self.client.register_script(_RENEW)

    def reserve(self, *, scopes: list[Scope], token: str, day: date, lease_ms: int) -> Refusal | None:
        keys: list[str] = []
        args: list[object] = [token, WINDOW_MS, lease_ms]
        for scope in scopes:
            keys += [scope.key("requests"), scope.key("turns"), tokens_key(scope, day)]
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
        marker = settled_key(scopes[0], turn_id)
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
                pipe.incrby(tokens_key(scope, day), tokens)
                pipe.expire(tokens_key(scope, day), TOKENS_TTL_SECONDS)
        pipe.execute()

    def renew(self, *, scopes: list[Scope], turn_id: str, lease_ms: int) -> None:
        self._renew(keys=[scope.key("turns") for scope in scopes], args=[turn_id, lease_ms])

    def drop_holders(self, *, scope: Scope, members: Iterable[str]) -> None:
        members = list(members)
        if members:
            self.client.zrem(scope.key("turns"), *members)


def _or_none(limit: int | None) -> int:
    return -1 if limit is None else limit
