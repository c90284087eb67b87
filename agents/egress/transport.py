"""How Parley reaches the network: an httpx2 client whose every connection goes to an address
the policy (policy.py) vetted when the connection is opened, and bodies read within a size cap."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore2
import httpx2

from agents.bounds import BoundedStream, check_connect
from agents.egress.policy import (
    ALLOWED_SCHEMES,
    MAX_REDIRECTS,
    EgressRefused,
    Unresolvable,
    check_credentials,
    refuse,
    vet_host,
)

# One logger for all of egress, policy and transport alike: operators filter on its name.
logger = logging.getLogger("agents.egress")


# --- the client ---------------------------------------------------------------------------------


class _VettingBackend(httpcore2.NetworkBackend):
    """httpcore2's own sync backend, connecting only to vetted addresses, with connections that
    honour the calling thread's `outbound_bounds` (agents.bounds)."""

    def __init__(self) -> None:
        self._sockets = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        timeout = check_connect(timeout)  # within the caller's outbound_bounds, if any
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            addresses = vet_host(host, port, timeout=timeout)
        except Unresolvable as exc:
            raise httpcore2.ConnectError(f"Could not resolve {host}: {exc}") from None
        failure: Exception | None = None
        for address in addresses:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise httpcore2.ConnectTimeout(f"Connecting to {host} took longer than {timeout:g} s.")
            try:
                stream = self._sockets.connect_tcp(
                    str(address),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return BoundedStream(stream)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


class _VettingTransport(httpx2.HTTPTransport):
    """httpx2's transport over a connection pool whose connections are vetted."""

    def __init__(self) -> None:
        # Not super().__init__(): that builds a pool of unvetted connections. HTTPTransport's
        # methods use only self._pool. SSL_CERT_FILE/SSL_CERT_DIR are honoured.
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(verify=True, trust_env=True),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            network_backend=_VettingBackend(),
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # Here, not only in check_url: redirects come through here too.
        if request.url.scheme not in ALLOWED_SCHEMES:
            raise refuse(
                f"Refusing a URL with '{request.url.scheme}': only http and https URLs can be called."
            )
        check_credentials(request.url)
        return super().handle_request(request)


class OutboundClient(httpx2.Client):
    def build_request(self, method: str, url: httpx2.URL | str, **kwargs: Any) -> httpx2.Request:
        try:
            return super().build_request(method, url, **kwargs)
        except httpx2.InvalidURL as exc:
            raise refuse(f"Refusing an invalid URL: {exc}") from None


def outbound_client(*, timeout: float, follow_redirects: bool = False) -> httpx2.Client:
    """An httpx2 client for calling the outside world (pass it as the `openai` SDK's
    `http_client`). Every connection it opens is vetted (see the module docstring); a refusal
    raises EgressRefused from the call. `timeout` bounds connecting (name lookup included), each
    read, each write and the wait for a pooled connection. Redirects are not followed unless
    asked, and then at most MAX_REDIRECTS hops, each vetted. Safe to share between threads; it
    keeps no cookies, so sharing it never carries one caller's cookies to another's request.
    Proxies and .netrc from the environment are ignored (a proxy would hide the destination)."""
    return OutboundClient(
        transport=_VettingTransport(),
        timeout=httpx2.Timeout(timeout),
        follow_redirects=follow_redirects,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


def read_capped(response: httpx2.Response, *, max_bytes: int, max_seconds: float | None = None) -> bytes:
    """The (decoded) body of a streamed response, refused with EgressRefused
    (code "response_too_large") as soon as it passes `max_bytes`; the response is then closed.
    With `max_seconds`, a body still arriving after that long raises httpx2.ReadTimeout (the
    client's timeout bounds each read, not a slow drip)."""
    started = time.monotonic()
    body = bytearray()
    for chunk in iter_capped(response, max_bytes=max_bytes):
        body += chunk
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            response.close()
            raise httpx2.ReadTimeout(
                f"The response took longer than {max_seconds:g} s to arrive.", request=response.request
            )
    return bytes(body)


def iter_capped(response: httpx2.Response, *, max_bytes: int) -> Iterator[bytes]:
    """The (decoded) body of a streamed response as it arrives, refused with EgressRefused
    (code "response_too_large") as soon as it passes `max_bytes`; the response is then closed."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes and "content-encoding" not in response.headers:
        response.close()
        raise _too_large(response, max_bytes)
    received = 0
    for chunk in _body_chunks(response):
        received += len(chunk)
        if received > max_bytes:
            response.close()
            raise _too_large(response, max_bytes)
        yield chunk


def _body_chunks(response: httpx2.Response) -> Iterator[bytes]:
    try:
        yield response.content  # already read (a client call without stream=True)
    except httpx2.ResponseNotRead:
        yield from response.iter_bytes()


def _too_large(response: httpx2.Response, max_bytes: int) -> EgressRefused:
    message = f"The response from {response.request.url.host} is larger than {max_bytes} bytes."
    logger.warning("Egress refused: %s", message)
    return EgressRefused(message, code="response_too_large")
