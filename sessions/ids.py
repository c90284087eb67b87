"""Public ids: a readable type prefix and 24 random base62 characters."""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def new_public_id(prefix: str) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
