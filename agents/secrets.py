"""Secrets in agent configuration (upstream API keys, signing secrets): encrypted at rest with
Fernet, never returned by any API, page or log. A secret can also be given as the name of an
environment variable (`api_key_env`), so that it never enters the database at all.

The key comes from PARLEY_SECRETS_KEY (a Fernet key) or, by default, is derived from SECRET_KEY;
rotating SECRET_KEY without setting PARLEY_SECRETS_KEY makes stored secrets unreadable."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

ENCRYPTED = "encrypted"


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
