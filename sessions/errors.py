"""How a turn's end is told as an API error: the stored shape a runner, a cancel or recovery
writes, and the error it is raised again as to a client that waited for the turn."""

from __future__ import annotations

from django.conf import settings

from config.errors import ApiError, ServerError
from sessions.models import Turn

TURN_CANCELLED = ApiError("The turn was cancelled.", code="turn_cancelled")


def turn_restarted(turn_id: str, *, restart_seq: int) -> ServerError:
    """The restart marker: stored where a new attempt's events begin, after those of the attempt
    it took over from. A listener that got some of the old attempt's events gets this as its
    last event (sessions/api/sse.py); following the turn again from it gives the new answer."""
    return ServerError(
        f"The worker answering turn {turn_id} was lost and the turn started over. Follow "
        f"GET /v1/turns/{turn_id}/events again with Last-Event-ID: {restart_seq} for the new answer.",
        code="turn_restarted",
    )


def turns_exhausted_error() -> ServerError:
    return ServerError(
        f"The turn was given up: the worker running it was lost on each of its "
        f"{settings.PARLEY_TURN_MAX_ATTEMPTS} attempts.",
        code="turn_attempts_exhausted",
    )


def stored_error(error: ApiError) -> dict:
    """An error as a turn's row keeps it (Turn.error): its status and its envelope."""
    return {"status": error.status, **error.payload()}


def turn_error(turn: Turn) -> ApiError:
    """The stored error of a failed or cancelled turn, to raise again to the client."""
    stored = turn.error or {}
    body = stored.get("error", {})
    error = ApiError(body.get("message", "The turn failed."), param=body.get("param"), code=body.get("code"))
    error.status = stored.get("status", 500)
    error.error_type = body.get("type", "server_error")
    return error
