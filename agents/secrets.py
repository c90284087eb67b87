"""Secrets in agent configuration (upstream API keys, signing secrets): encrypted at rest with
Fernet, never returned by any API, page or log. A secret can also be given as the name of an
environment variable (`api_key_env`), so that it never enters the database at all; only
variables the operator offered for that can be named (`key_variable_offered`).

The key comes from PARLEY_SECRETS_KEY (a Fernet key) or, by default, is derived from SECRET_KEY;
rotating SECRET_KEY without setting PARLEY_SECRETS_KEY makes stored secrets unreadable."""

from __future__ import annotations

import base64
import hashlib
import os
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

ENCRYPTED = "encrypted"
# Any variable with this prefix is offered to agents as an upstream key (besides the names in
# PARLEY_UPSTREAM_KEY_ENVS); the setting's own name is not one.
UPSTREAM_KEY_PREFIX = "PARLEY_UPSTREAM_KEY_"
_NOT_A_KEY = frozenset({"PARLEY_UPSTREAM_KEY_ENVS"})
KEY_VARIABLE_NOT_OFFERED = (
    "is not an environment variable offered for upstream keys (only those listed in "
    f"PARLEY_UPSTREAM_KEY_ENVS and those named {UPSTREAM_KEY_PREFIX}* are)"
)


@cache
def _fernet() -> Fernet:
    key = settings.PARLEY_SECRETS_KEY
    if not key:
        digest = hashlib.sha256(b"parley-secrets:" + settings.SECRET_KEY.encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    return Fernet(key)


def seal(plaintext: str) -> dict[str, str]:
    """What is stored in place of a secret."""
    return {ENCRYPTED: _fernet().encrypt(plaintext.encode()).decode()}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {ENCRYPTED}


def unseal(value: Any) -> str:
    if not is_sealed(value):
        raise ValueError("Not a sealed secret.")
    try:
        return _fernet().decrypt(value[ENCRYPTED].encode()).decode()
    except InvalidToken:
        raise ValueError("The secret cannot be decrypted with this server's key.") from None


def key_variable_offered(name: str) -> bool:
    """Whether an agent may name the environment variable `name` as its upstream key. Only what
    the operator offered: a name in PARLEY_UPSTREAM_KEY_ENVS, or one with UPSTREAM_KEY_PREFIX.
    Anything else (SECRET_KEY, DATABASE_URL, ...) would let a tenant have the server's own
    secrets sent to an upstream of its choosing."""
    if name in _NOT_A_KEY:
        return False
    if name in settings.PARLEY_UPSTREAM_KEY_ENVS:
        return True
    return name.startswith(UPSTREAM_KEY_PREFIX) and len(name) > len(UPSTREAM_KEY_PREFIX)


def read_key_variable(name: str) -> str | None:
    """The value of an offered key variable (None when unset or empty). ValueError for a
    variable that is not offered: it is never read."""
    if not key_variable_offered(name):
        raise ValueError(f"{name} {KEY_VARIABLE_NOT_OFFERED}")
    return os.environ.get(name) or None
