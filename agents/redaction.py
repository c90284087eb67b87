"""What an agent's failure may show: the error of an upstream or a webhook without secrets.

An upstream that refuses a key often quotes it back ("Incorrect API key provided: sk-..."), and a
webhook's error body may hold whatever it received, headers included. That text becomes the
turn's error: the answer to the client (a chat-only key too), the stream's error event, the turn
object, the stored turn and its events, the session export. So the turn runner passes every error
through `redacted_error` first: the agent's own secrets, and anything shaped like a bearer token,
an `sk-` key or a Parley signature, become `[redacted]`."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agents.backends import backend_for
from agents.secrets import is_sealed, unseal
from config.errors import ApiError
from config.inputs import storable

if TYPE_CHECKING:
    from agents.models import Agent

REDACTED = "[redacted]"
# Shorter values are not keys, and replacing them would blank out ordinary words.
_MIN_SECRET_LENGTH = 8
_SECRET_SHAPES = [
    # An Authorization value, whoever's it is (a JWT has dots inside, a sentence one at its end).
    (re.compile(r"\b(Bearer)\s+[\w~+/=*-][\w.~+/=*:-]{6,}[\w~+/=*-]", re.IGNORECASE), rf"\1 {REDACTED}"),
    # OpenAI-style keys (sk-..., sk-proj-..., and Parley's own sk-parley-...).
    (re.compile(r"\bsk-[\w*-]{8,}"), REDACTED),
    # The HMAC of a Parley-Signature header (t=...,v1=<hex>).
    (re.compile(r"\b(v1=)[0-9a-fA-F]{16,}"), rf"\1{REDACTED}"),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secrets and without anything shaped like a credential."""
    for secret in sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for shape, replacement in _SECRET_SHAPES:
        text = shape.sub(replacement, text)
    return text


def redacted_error(error: ApiError, *, secrets: Iterable[str] = ()) -> ApiError:
    """A copy of `error` whose message holds no secret (the status, type, param and code are
    Parley's own)."""
    clean = copy.copy(error)
    # An agent's error text is stored with the turn too: nothing in it PostgreSQL refuses.
    clean.message = storable(redact(error.message, secrets))
    clean.args = (clean.message,)
    return clean


def agent_secrets(agent: Agent | None) -> list[str]:
    """Every secret that the agent's calls send out: its backend's (API key, signing secret) and
    its server-side tools' signing secrets."""
    if agent is None:
        return []
    try:
        found = backend_for(agent.backend).secrets(agent.backend_config)
    except LookupError:  # a backend this server does not know sends nothing
        found = []
    for tool in agent.tools or []:
        sealed = tool.get("secret") if isinstance(tool, dict) else None
        if is_sealed(sealed):
            try:
                found.append(unseal(sealed))
            except ValueError:
                continue
    return found
