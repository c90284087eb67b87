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
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore2
import httpx2
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from agents.bounds import BoundedStream, check_connect
from config.errors import ApiError

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
ALLOW_HINT = "add it to PARLEY_EGRESS_ALLOW to allow it"


class EgressRefused(ApiError):
    """An outbound call Parley will not make. The message names the host and the reason, never
    the whole URL (which may carry credentials)."""

    status = 400
    error_type = "invalid_request_error"
    default_code = "egress_refused"


# --- which addresses are refused ----------------------------------------------------------------

# Most specific first: the first range that holds an address names the reason.
_REFUSED_V4 = [
    (ipaddress.ip_network(network), reason)
    for network, reason in [
        ("169.254.169.254/32", "the cloud metadata address"),
        ("0.0.0.0/32", "the unspecified address"),
        ("0.0.0.0/8", "a 'this network' address"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("169.254.0.0/16", "a link-local address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", "a documentation address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("192.88.99.0/24", "a 6to4 relay address"),
    ]
]
_REFUSED_V6 = [
    (ipaddress.ip_network(network), reason)
    for network, reason in [
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "a deprecated IPv4-compatible address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("fc00::/7", "a private (unique local) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    ]
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` may not be called without the operator's leave (None: it is public)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            embedded = refusal_reason(address.ipv4_mapped)
            return embedded and f"an IPv4-mapped form of {address.ipv4_mapped}, {embedded}"
        if address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            embedded = refusal_reason(inner)
            return embedded and f"a NAT64 form of {inner}, {embedded}"
        if address.sixtofour is not None:
            embedded = refusal_reason(address.sixtofour)
            return embedded and f"a 6to4 form of {address.sixtofour}, {embedded}"
        table: list = _REFUSED_V6
    else:
        table = _REFUSED_V4
    for network, reason in table:
        if address in network:
            return reason
    if address.version == 6 and address not in _GLOBAL_UNICAST_V6:
        return "a non-public address"  # e.g. IPv4-translated ::ffff:0:a.b.c.d, unassigned space
    # Whatever else IANA keeps out of the public internet.
    return None if address.is_global else "a non-public address"


# --- the operator's allow-list ------------------------------------------------------------------


@dataclass(frozen=True)
class _AllowList:
    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IPNetwork, ...]

    def admits_name(self, name: str) -> bool:
        return name in self.names or any(name.endswith(suffix) for suffix in self.suffixes)

    def admits_address(self, address: IPAddress) -> bool:
        address = _unmapped(address)
        return any(address.version == network.version and address in network for network in self.networks)


def _allow_list() -> _AllowList:
    return _parse_allow_list(tuple(settings.PARLEY_EGRESS_ALLOW))


def egress_settings_check() -> None:
    """Parse PARLEY_EGRESS_ALLOW now: a bad entry stops the process at start-up
    (ImproperlyConfigured), not at an agent's first outbound call."""
    _allow_list()


@lru_cache(maxsize=8)
def _parse_allow_list(entries: tuple[str, ...]) -> _AllowList:
    """Entries are host names (`internal.example`, or `*.internal.example` for its subdomains),
    addresses (`127.0.0.1`, `::1`) and CIDR ranges (`10.0.0.0/8`)."""
    names: set[str] = set()
    suffixes: list[str] = []
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            if "/" in entry or ":" in entry:
                raise ImproperlyConfigured(
                    f"PARLEY_EGRESS_ALLOW: {raw!r} is not a valid address range."
                ) from None
        if entry.startswith("*."):
            suffixes.append(entry[1:].rstrip("."))
        elif re.fullmatch(r"[a-z0-9_.-]+", entry):
            names.add(entry.rstrip("."))
        else:
            raise ImproperlyConfigured(f"PARLEY_EGRESS_ALLOW: {raw!r} is not a host name, address or range.")
    return _AllowList(frozenset(names), tuple(suffixes), tuple(networks))


# --- vetting a host -----------------------------------------------------------------------------


class _Unresolvable(Exception):
    pass


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _normal_name(host: str) -> str:
    return host.lower().removesuffix(".")


def _literal_address(name: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(name.strip("[]").replace("%25", "%"))
    except ValueError:
        return None


def _legacy_ipv4(name: str) -> ipaddress.IPv4Address | None:
    """The address that inet_aton (and so getaddrinfo) reads in a non-dotted-quad numeric host:
    `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`. None for anything else."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        if re.fullmatch(r"0x[0-9a-f]*", part):
            values.append(int(part[2:] or "0", 16))
        elif re.fullmatch(r"0[0-7]+", part):
            values.append(int(part, 8))
        elif re.fullmatch(r"[0-9]+", part):
            values.append(int(part))
        else:
            return None
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for value in leading:
        number = number * 256 + value
    return ipaddress.IPv4Address(number * 256 ** (5 - len(values)) + last)


def _shown(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def _is_localhost_name(name: str) -> bool:
    # RFC 6761: these names are loopback wherever they are looked up, even where they are not.
    return name == "localhost" or name.endswith(".localhost")


def _resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    """getaddrinfo within `timeout` (it has no timeout of its own; a stuck lookup is left to
    finish on its daemon thread)."""
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except (OSError, UnicodeError) as exc:
            outcome["error"] = exc

    if timeout is None:
        lookup()
    else:
        thread = threading.Thread(target=lookup, name="egress-resolve", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise httpcore2.ConnectTimeout(f"Resolving {host} took longer than {timeout:g} s.")
    if "error" in outcome:
        raise _Unresolvable(str(outcome["error"]))
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonical, sockaddr in outcome["infos"]:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _Unresolvable("no addresses")
    return addresses


def _refuse(message: str) -> EgressRefused:
    logger.warning("Egress refused: %s", message)
    return EgressRefused(message)


def _port_refusal(host: str, port: int) -> EgressRefused:
    ports = ", ".join(str(allowed) for allowed in settings.PARLEY_EGRESS_PORTS) or "none"
    return _refuse(
        f"Refusing to connect to {host} on port {port}: only ports {ports} are allowed "
        "(PARLEY_EGRESS_PORTS); hosts in PARLEY_EGRESS_ALLOW may use any port."
    )


def _vet(host: str, port: int, *, timeout: float | None) -> list[IPAddress]:
    """The addresses that a connection to host:port may use, every one of them allowed.

    Raises EgressRefused, `_Unresolvable` when the name has no address, or httpcore2's
    ConnectTimeout when the lookup outlasts `timeout`."""
    name = _normal_name(host)
    shown = _shown(name)
    allow = _allow_list()
    literal = _literal_address(name)
    if literal is None and allow.admits_name(name):
        return _resolve(host, port, timeout)
    port_allowed = port in settings.PARLEY_EGRESS_PORTS
    if literal is not None:
        addresses = [literal]
    elif not port_allowed and not allow.networks:
        raise _port_refusal(shown, port)  # no address could be admitted: no need to look it up
    else:
        try:
            addresses = _resolve(host, port, timeout)
        except _Unresolvable:
            if _is_localhost_name(name):
                raise _refuse(
                    f"Refusing to connect to {shown}: it is a loopback name; {ALLOW_HINT}."
                ) from None
            if not port_allowed:
                raise _port_refusal(shown, port) from None
            raise
    for address in addresses:
        if allow.admits_address(address):
            continue
        reason = refusal_reason(address)
        if reason is not None:
            subject = "it is" if literal is not None else f"it resolves to {address},"
            raise _refuse(f"Refusing to connect to {shown}: {subject} {reason}; {ALLOW_HINT}.")
        if not port_allowed:
            raise _port_refusal(shown, port)
    return addresses


def _check_credentials(url: httpx2.URL) -> None:
    """A URL may not carry credentials (`user:password@host`): they would be sent to the host,
    shown wherever the URL is (agents' public configuration, logs), and stored in clear."""
    if url.userinfo:
        host = _shown(_normal_name(url.raw_host.decode("ascii"))) or "the host"
        raise _refuse(
            f"Refusing a URL with credentials in it (user:password@{host}): give secrets in the "
            "settings made for them (api_key, secret), never in a URL."
        )


def check_url(url: str) -> None:
    """Raise EgressRefused for a URL that outbound clients would refuse to call: a scheme other
    than http/https, credentials in the URL, a missing host, a port that is not allowed, a
    numeric host in a non-standard form (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`), or a
    host that is, or resolves to, a refused address. For validating configuration when it is
    saved; the clients check again at every request and connection. A name that does not
    resolve (yet) passes."""
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError) as exc:
        raise _refuse(f"Refusing an invalid URL: {exc}") from None
    scheme = parsed.scheme
    if scheme not in ALLOWED_SCHEMES:
        shown = f"'{scheme}'" if scheme else "no scheme"
        raise _refuse(f"Refusing a URL with {shown}: only http and https URLs can be called.")
    _check_credentials(parsed)
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise _refuse("Refusing a URL without a host.")
    name = _normal_name(host)
    if _literal_address(name) is None and (legacy := _legacy_ipv4(name)) is not None:
        reason = refusal_reason(legacy)
        about = f"{legacy}, {reason}" if reason else str(legacy)
        raise _refuse(
            f"Refusing to connect to {name}: it is a non-standard way of writing the address {about}; "
            "write addresses as four decimal numbers (a.b.c.d)."
        )
    with contextlib.suppress(_Unresolvable, httpcore2.ConnectTimeout):
        _vet(host, parsed.port or DEFAULT_PORTS[scheme], timeout=5.0)


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
            addresses = _vet(host, port, timeout=timeout)
        except _Unresolvable as exc:
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
            raise _refuse(
                f"Refusing a URL with '{request.url.scheme}': only http and https URLs can be called."
            )
        _check_credentials(request.url)
        return super().handle_request(request)


class OutboundClient(httpx2.Client):
    def build_request(self, method: str, url: httpx2.URL | str, **kwargs: Any) -> httpx2.Request:
        try:
            return super().build_request(method, url, **kwargs)
        except httpx2.InvalidURL as exc:
            raise _refuse(f"Refusing an invalid URL: {exc}") from None


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
