"""The one way server tools reach the network: through the egress helper (agents.egress), which
refuses internal addresses and ports the operator did not allow, with every failure turned into a
ToolError the model can read."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2

from agents import egress
from agents.tools.base import ToolError


@dataclass(frozen=True)
class Fetched:
    status: int
    content_type: str
    encoding: str | None
    body: bytes

    def text(self) -> str:
        try:
            return self.body.decode(self.encoding or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


def split_http_url(url: str) -> tuple[str, str]:
    """(scheme, lower-case host) of an http(s) URL, or ValueError. (Credentials in the URL are
    refused by the egress check, as for every outbound URL.)"""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    return parts.scheme, parts.hostname.lower()


def fetch(
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> Fetched:
    """One request, redirects not followed, the body read up to `max_bytes`, the whole exchange
    within about `timeout` seconds (the client's timeout bounds each read, not a slow drip)."""
    try:
        egress.check_url(url)
        with (
            egress.outbound_client(timeout=timeout) as client,
            client.stream(method, url, headers=headers, content=content) as response,
        ):
            body = egress.read_capped(response, max_bytes=max_bytes, max_seconds=timeout)
            return Fetched(
                status=response.status_code,
                content_type=response.headers.get("content-type", ""),
                encoding=response.charset_encoding,
                body=body,
            )
    except egress.EgressRefused as refusal:
        raise ToolError(refusal.message) from None
    except httpx2.TimeoutException:
        raise ToolError(f"no complete answer within {timeout:g} s") from None
    except (httpx2.HTTPError, httpx2.InvalidURL) as failure:
        raise ToolError(f"the request failed: {type(failure).__name__}") from None
