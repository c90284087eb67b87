"""The one way Parley reaches the network: upstream models (through the `openai` SDK), customer
webhooks and HTTP tools all use a client from `outbound_client`.

Every connection such a client opens is vetted when it is opened, not when the URL is read: the
host is resolved once, every address it resolves to must be public (or admitted by the operator's
`PARLEY_EGRESS_ALLOW`), and the TCP connection goes to one of exactly those addresses, so a DNS
answer that changes between the check and the connection (DNS rebinding) gains nothing. TLS still
verifies the certificate against the host name, and the Host header still carries it. Because the
check sits at the connection, every redirect hop is checked the same way.

A refusal raises `EgressRefused` (an `ApiError`, 400) from the client call itself: httpx2 passes
exceptions of its transport through unwrapped when they are not its own, and so does the `openai`
SDK (it wraps only httpx2's `RequestError`s), so callers catch `EgressRefused` directly, and the
SDK does not retry a refusal.

Only the http and https schemes are called, and never a URL with credentials in it
(`user:password@host`). Public addresses are called on the ports of
`PARLEY_EGRESS_PORTS`; hosts and ranges of `PARLEY_EGRESS_ALLOW` on any port.

The address policy is policy.py; the client that applies it at every connection, transport.py.
"""

from agents.egress.policy import (
    MAX_REDIRECTS,
    EgressRefused,
    check_url,
    egress_settings_check,
    refusal_reason,
)
from agents.egress.transport import iter_capped, outbound_client, read_capped

__all__ = [
    "MAX_REDIRECTS",
    "EgressRefused",
    "check_url",
    "egress_settings_check",
    "iter_capped",
    "outbound_client",
    "read_capped",
    "refusal_reason",
]
