"""The counters for one process (the embedded mode, which is one process by design): what the
Redis scripts do, under a lock."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date

from sessions.limits.policy import SETTLED_TTL_SECONDS, WINDOW_MS, Refusal, Scope, settled_key, tokens_key


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
                if quota is not None and memory.tokens.get(tokens_key(scope, day), 0) >= quota:
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
        marker = settled_key(scopes[0], turn_id)
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
                    key = tokens_key(scope, day)
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
