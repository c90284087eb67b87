"""Public ids: a readable type prefix and 24 random base62 characters."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

SESSION_PREFIX = "sess"
TURN_PREFIX = "turn"
# Every prefix Parley hands out. A session id that starts like one of these can only have been
# issued by Parley, so a client may name it but never create it.
PUBLIC_ID_PREFIXES = (SESSION_PREFIX, TURN_PREFIX)


def new_public_id(prefix: str) -> str:
    if prefix not in PUBLIC_ID_PREFIXES:
        raise ValueError(f"'{prefix}' is not one of Parley's id prefixes {PUBLIC_ID_PREFIXES}")
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def is_reserved_session_id(session_id: str) -> bool:
    """True for an id with one of Parley's own prefixes (sess_…, turn_…): a client-chosen
    session id never looks like one."""
    return session_id.startswith(tuple(f"{prefix}_" for prefix in PUBLIC_ID_PREFIXES))
