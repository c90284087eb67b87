"""What a request is held to: the scopes (an organization and its API key) with their limits,
the counters' interface, and the error a refusal is answered with."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from django.conf import settings

from config.errors import InsufficientQuota, RateLimited

if TYPE_CHECKING:
    from accounts.models import ApiKey, Organization

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


def tokens_key(scope: Scope, day: date) -> str:
    return scope.key(f"tokens:{day:%Y%m%d}")


def settled_key(scope: Scope, turn_id: str) -> str:
    return f"{settings.PARLEY_LIMITS_PREFIX}:limits:{{o{scope.organization_id}}}:turn:{turn_id}"


def slot_lease_ms() -> int:
    return SLOT_LEASE_FACTOR * settings.PARLEY_TURN_LEASE_SECONDS * 1000


def today() -> date:
    return datetime.now(UTC).date()


def refusal_error(refusal: Refusal) -> RateLimited:
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
