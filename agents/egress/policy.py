"""Which outbound calls Parley makes: the address policy. Addresses that are not public are
refused (each range with its reason), unless the operator's PARLEY_EGRESS_ALLOW admits the host
or range; public addresses are called on the ports of PARLEY_EGRESS_PORTS only; URLs are http or
https without credentials. `vet_host` resolves a host once and answers the addresses a connection
may use (transport.py connects to exactly those); `check_url` vets a URL when configuration is
saved."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import socket
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpcore2
import httpx2
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.errors import ApiError

# One logger for all of egress, policy and transport alike: operators filter on its name.
logger = logging.getLogger("agents.egress")

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


class Unresolvable(Exception):
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
        raise Unresolvable(str(outcome["error"]))
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonical, sockaddr in outcome["infos"]:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Unresolvable("no addresses")
    return addresses


def refuse(message: str) -> EgressRefused:
    logger.warning("Egress refused: %s", message)
    return EgressRefused(message)


def _port_refusal(host: str, port: int) -> EgressRefused:
    ports = ", ".join(str(allowed) for allowed in settings.PARLEY_EGRESS_PORTS) or "none"
    return refuse(
        f"Refusing to connect to {host} on port {port}: only ports {ports} are allowed "
        "(PARLEY_EGRESS_PORTS); hosts in PARLEY_EGRESS_ALLOW may use any port."
    )


def vet_host(host: str, port: int, *, timeout: float | None) -> list[IPAddress]:
    """The addresses that a connection to host:port may use, every one of them allowed.

    Raises EgressRefused, `Unresolvable` when the name has no address, or httpcore2's
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
        except Unresolvable:
            if _is_localhost_name(name):
                raise refuse(
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
            raise refuse(f"Refusing to connect to {shown}: {subject} {reason}; {ALLOW_HINT}.")
        if not port_allowed:
            raise _port_refusal(shown, port)
    return addresses


def check_credentials(url: httpx2.URL) -> None:
    """A URL may not carry credentials (`user:password@host`): they would be sent to the host,
    shown wherever the URL is (agents' public configuration, logs), and stored in clear."""
    if url.userinfo:
        host = _shown(_normal_name(url.raw_host.decode("ascii"))) or "the host"
        raise refuse(
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
        raise refuse(f"Refusing an invalid URL: {exc}") from None
    scheme = parsed.scheme
    if scheme not in ALLOWED_SCHEMES:
        shown = f"'{scheme}'" if scheme else "no scheme"
        raise refuse(f"Refusing a URL with {shown}: only http and https URLs can be called.")
    check_credentials(parsed)
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise refuse("Refusing a URL without a host.")
    name = _normal_name(host)
    if _literal_address(name) is None and (legacy := _legacy_ipv4(name)) is not None:
        reason = refusal_reason(legacy)
        about = f"{legacy}, {reason}" if reason else str(legacy)
        raise refuse(
            f"Refusing to connect to {name}: it is a non-standard way of writing the address {about}; "
            "write addresses as four decimal numbers (a.b.c.d)."
        )
    with contextlib.suppress(Unresolvable, httpcore2.ConnectTimeout):
        vet_host(host, parsed.port or DEFAULT_PORTS[scheme], timeout=5.0)
