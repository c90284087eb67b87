"""Turns held to the limits of accounts/limits.py: a request's place is taken before its turn is
submitted and bound to the turn after; the turn's runner renews and frees it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from accounts.limits import limit_scopes, limits_drop_turn_slot, limits_reserve, limits_turn_renew
from config.errors import RateLimited
from sessions.models import Turn
from sessions.selectors import turn_by_idempotency_key

if TYPE_CHECKING:
    from accounts.principal import Principal

logger = logging.getLogger(__name__)


def submit_within_limits(principal: Principal, submit: Callable[..., Turn]) -> Callable[..., Turn]:
    """`submit` (turn_submit) held to the caller's limits; call the result with submit's arguments.

    The limits are checked and the request counted atomically before the turn exists, so that
    concurrent requests on any number of servers cannot overshoot; a refused request stores
    nothing. Once `submit` returns, the count is bound to the turn: a request answered by an
    earlier turn (an Idempotency-Key, or a retry the server recognises) finds that turn already
    counted and gives its count back, so a retry never takes a second slot or counts twice. A
    request that fails gives its count back too. A retry with an Idempotency-Key that already names
    a turn passes even at the limit, since it starts nothing."""

    def submit_limited(**arguments: Any) -> Turn:
        scopes = limit_scopes(organization=principal.organization, api_key=principal.api_key)
        try:
            reservation = limits_reserve(scopes=scopes, still_running=_still_running)
        except RateLimited:
            key = arguments.get("idempotency_key")
            if key and turn_by_idempotency_key(organization=principal.organization, key=key) is not None:
                return submit(**arguments)
            raise
        if reservation is None:
            return submit(**arguments)
        try:
            turn = submit(**arguments)
        except BaseException:
            _quietly(reservation.give_back)
            raise
        # The turn exists and runs whatever happens here: a failure to settle only leaves the
        # reservation to expire with its window or lease.
        settled_here = _quietly(reservation.settle, turn_id=turn.id)
        # A fast turn may have finished (and freed its slot) before the slot held its id.
        if settled_here and reservation.holds_turn_slots and not _still_running([turn.id]):
            limits_drop_turn_slot(
                organization_id=turn.organization_id, api_key_id=turn.api_key_id, turn_id=turn.id
            )
        return turn

    return submit_limited


def _quietly(function: Callable[..., bool | None], **arguments: Any) -> bool | None:
    try:
        return function(**arguments)
    except Exception:
        logger.exception("Could not settle a request's limits")
        return None


def _still_running(turn_ids: list[str]) -> set[str]:
    if not turn_ids:
        return set()
    unfinished = Turn.objects.filter(pk__in=turn_ids, status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING])
    return set(unfinished.values_list("pk", flat=True))


def turn_limits_renew(turn: Turn) -> None:
    """Keep a running turn's concurrency slot as long as its lease (call when renewing it)."""
    limits_turn_renew(organization_id=turn.organization_id, api_key_id=turn.api_key_id, turn_id=turn.id)
