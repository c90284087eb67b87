"""Signatures of Parley's outbound requests (tenant-defined HTTP tools, webhook agents), in the
scheme of Stripe's webhook signatures:

    Parley-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with the secret>

The receiver recomputes the HMAC over the raw body it received, compares in constant time and
refuses timestamps too far from its clock (a replayed request). Several `v1=` values may appear
(while a secret is rotated); one match is enough. A receiver in Python:

    import hashlib, hmac, re, time

    def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
        items = [item.split("=", 1) for item in header.split(",") if "=" in item]
        timestamps = [value for key, value in items if key.strip() == "t"]
        signatures = [value.strip() for key, value in items if key.strip() == "v1"]
        if len(timestamps) != 1 or not re.fullmatch(r"[0-9]+", timestamps[0].strip()) or not signatures:
            return False
        if abs(time.time() - int(timestamps[0])) > tolerance:
            return False
        expected = hmac.new(secret.encode(), timestamps[0].strip().encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(expected.encode(), signature.encode()) for signature in signatures)
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Parley-Signature"


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The Parley-Signature header value for a request body (timestamp: now by default)."""
    if timestamp is None:
        timestamp = int(time.time())
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify(
    secret: str, body: bytes, header: str, tolerance_seconds: int = 300, *, now: float | None = None
) -> bool:
    """Whether `header` signs `body` with `secret` at a time within `tolerance_seconds` of now."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.partition("=")
        if not separator:
            continue
        key, value = key.strip(), value.strip()
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not (timestamps[0].isascii() and timestamps[0].isdigit()) or not signatures:
        return False
    timestamp = int(timestamps[0])
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, body, timestamp)
    # Bytes: compare_digest refuses non-ASCII str, and a header is outside input.
    return any(hmac.compare_digest(expected.encode(), signature.encode()) for signature in signatures)
