"""The egress helper (agents.egress): an SSRF corpus refused with the allow-list empty while a
canary listener on loopback receives no connection, redirects re-checked hop by hop, the
operator's allow-list, size and time caps. Only loopback addresses are ever connected to."""

from __future__ import annotations

import gzip
import http.server
import ipaddress
import logging
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx2
import openai
import pytest
from django.core.exceptions import ImproperlyConfigured

from agents.egress import MAX_REDIRECTS, EgressRefused, check_url, outbound_client, read_capped
from tests.live import ROOT

# --- real servers on loopback -------------------------------------------------------------------


class Canary:
    """A TCP listener that records every connection it accepts (and closes it at once)."""

    def __init__(self, host: str, family: socket.AddressFamily) -> None:
        self.host = host
        self.accepted: list[tuple] = []
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            readable, _, _ = select.select([self._socket], [], [], 0.02)
            if readable:
                connection, peer = self._socket.accept()
                self.accepted.append(peer)
                connection.close()

    def connections(self) -> list[tuple]:
        time.sleep(0.1)  # a connection that reached the backlog is accepted well within this
        return list(self.accepted)

    def connections_so_far(self) -> list[tuple]:
        return list(self.accepted)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=2)
        self._socket.close()


class Canaries:
    def __init__(self) -> None:
        self.v4 = Canary("127.0.0.1", socket.AF_INET)
        self.v6 = Canary("::1", socket.AF_INET6)

    def connections(self) -> list[tuple]:
        return self.v4.connections() + self.v6.connections_so_far()

    def close(self) -> None:
        self.v4.close()
        self.v6.close()


@pytest.fixture
def canary() -> Iterator[Canaries]:
    canaries = Canaries()
    yield canaries
    canaries.close()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    """Routes: /hello, /bytes?n=, /chunked?n=, /gzip?n=, /slow?seconds=, /drip?seconds=,
    /redirect?to=, /hops?n=, /cookie."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        self.server.seen.append(
            {"path": self.path, "host": self.headers.get("Host"), "cookie": self.headers.get("Cookie")}
        )
        route = getattr(self, "route_" + parts.path.strip("/"), None)
        if route is None:
            self.answer(404, b"not found")
        else:
            route(query)

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_hello(self, query: dict[str, str]) -> None:
        self.answer(200, b"hello")

    def route_bytes(self, query: dict[str, str]) -> None:
        self.answer(200, b"x" * int(query["n"]))

    def route_gzip(self, query: dict[str, str]) -> None:
        self.answer(200, gzip.compress(b"x" * int(query["n"])), {"Content-Encoding": "gzip"})

    def route_chunked(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        remaining = int(query["n"])
        while remaining:
            size = min(remaining, 1000)
            self.wfile.write(f"{size:x}\r\n".encode() + b"x" * size + b"\r\n")
            remaining -= size
        self.wfile.write(b"0\r\n\r\n")

    def route_slow(self, query: dict[str, str]) -> None:
        time.sleep(float(query["seconds"]))
        self.answer(200, b"late")

    def route_drip(self, query: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + float(query["seconds"])
        try:
            while time.monotonic() < deadline:
                self.wfile.write(b"1\r\nx\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client gave up, as it should

    def route_redirect(self, query: dict[str, str]) -> None:
        self.answer(302, b"", {"Location": query["to"]})

    def route_hops(self, query: dict[str, str]) -> None:
        left = int(query["n"])
        if left:
            self.answer(302, b"", {"Location": f"/hops?n={left - 1}"})
        else:
            self.answer(200, b"arrived")

    def route_cookie(self, query: dict[str, str]) -> None:
        self.answer(200, b"set", {"Set-Cookie": "tenant=acme; Path=/"})


class FakeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, tls: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), FakeHandler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.seen: list[dict] = []
        self.host = host
        self.port = self.server_address[1]
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[str], FakeServer]]:
    servers: list[FakeServer] = []

    def start(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> FakeServer:
        server = FakeServer(host, tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def nothing_allowed(settings, canary: Canaries) -> None:
    """The allow-list empty, and the canaries' ports allowed: only the address check stands
    between a request and a canary."""
    settings.PARLEY_EGRESS_ALLOW = []
    settings.PARLEY_EGRESS_PORTS = [80, 443, canary.v4.port, canary.v6.port]


class FakeDns:
    """Names of the test's choosing resolve to the addresses it sets (the rest as usual). Each
    lookup takes the next answer; the last answer repeats. An empty answer is NXDOMAIN."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def set(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)

    def getaddrinfo(self, real: Callable, host: str, port: int, *args, **kwargs) -> list:
        name = host.lower().removesuffix(".") if isinstance(host, str) else host
        if name not in self.answers:
            return real(host, port, *args, **kwargs)
        self.lookups.append(name)
        queue = self.answers[name]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if not answer:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (address, port, 0, 0) if ":" in address else (address, port),
            )
            for address in answer
        ]


@pytest.fixture
def fake_dns(monkeypatch) -> FakeDns:
    dns = FakeDns()
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: dns.getaddrinfo(real, *args, **kwargs))
    return dns


# --- the SSRF corpus ----------------------------------------------------------------------------

# (url, what the refusal says); {p} is the IPv4 canary's port on 127.0.0.1, {p6} the IPv6
# canary's on ::1. Every entry aimed at a canary would reach it if the check let it through.
SSRF_CORPUS = [
    ("http://127.0.0.1:{p}/", "127.0.0.1: it is a loopback address"),
    ("http://127.0.0.1.:{p}/", "loopback"),
    ("http://127.255.255.254:{p}/", "loopback"),
    ("http://2130706433:{p}/", "127.0.0.1, a loopback address"),
    ("http://017700000001:{p}/", "127.0.0.1, a loopback address"),
    ("http://0x7f000001:{p}/", "127.0.0.1, a loopback address"),
    ("http://0x7f.0.0.1:{p}/", "127.0.0.1, a loopback address"),
    ("http://0x7f.1:{p}/", "127.0.0.1, a loopback address"),
    ("http://0177.0.0.1:{p}/", "invalid URL"),
    ("http://127.1:{p}/", "127.0.0.1, a loopback address"),
    ("http://127.0.1:{p}/", "127.0.0.1, a loopback address"),
    ("http://[::ffff:127.0.0.1]:{p}/", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("http://[::ffff:7f00:1]:{p}/", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]:{p}/", "an IPv4-mapped form of 127.0.0.1"),
    ("http://[::127.0.0.1]:{p}/", "a deprecated IPv4-compatible address"),
    ("http://[::ffff:0:127.0.0.1]:{p6}/", "a non-public address"),
    ("http://[::1]:{p6}/", "[::1]: it is a loopback address"),
    ("http://[0:0:0:0:0:0:0:1]:{p6}/", "a loopback address"),
    ("http://localhost:{p}/", "loopback"),
    ("http://LOCALHOST:{p}/", "loopback"),
    ("http://localhost.:{p}/", "loopback"),
    ("http://tenant.localhost:{p}/", "loopback"),
    ("http://0.0.0.0:{p}/", "the unspecified address"),
    ("http://0:{p}/", "the unspecified address"),
    ("http://[::]:{p6}/", "the unspecified address"),
    ("http://user:hunter2@127.0.0.1:{p}/?api_key=sk-live", "credentials in it (user:password@127.0.0.1)"),
    ("gopher://127.0.0.1:{p}/_SET%20x%201", "only http and https"),
    ("ftp://127.0.0.1:{p}/", "only http and https"),
    ("dict://127.0.0.1:{p}/info", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http://169.254.169.254/latest/meta-data/", "the cloud metadata address"),
    ("http://169.254.0.1/", "a link-local address"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "a private (unique local) address"),
    (
        "http://[::ffff:169.254.169.254]/",
        "an IPv4-mapped form of 169.254.169.254, the cloud metadata address",
    ),
    ("http://[64:ff9b::a9fe:a9fe]/", "a NAT64 form of 169.254.169.254"),
    ("http://[2002:a9fe:a9fe::]/", "a 6to4 form of 169.254.169.254"),
    ("http://100.64.0.1/", "a carrier-grade NAT address"),
    ("http://10.1.2.3/", "a private address"),
    ("http://192.168.0.1/", "a private address"),
    ("http://172.16.0.1/", "a private address"),
    ("http://172.31.255.255/", "a private address"),
    ("http://[fc00::1]/", "a private (unique local) address"),
    ("http://[fe80::1]/", "a link-local address"),
    ("http://[fe80::1%25lo]/", "a link-local address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://[ff02::1]/", "a multicast address"),
    ("http://255.255.255.255/", "the broadcast address"),
    ("http://240.0.0.1/", "a reserved address"),
    ("http://198.18.0.1/", "a benchmarking address"),
    ("http://example.com:6379/", "port 6379"),
    ("http://example.com:22/", "port 22"),
    ("https://8.8.8.8:8443/", "port 8443"),
]


def corpus_url(template: str, canary: Canaries) -> str:
    return template.format(p=canary.v4.port, p6=canary.v6.port)


def test_the_corpus_is_large_enough() -> None:
    assert len(SSRF_CORPUS) >= 30
    assert len({url for url, _ in SSRF_CORPUS}) == len(SSRF_CORPUS)


@pytest.mark.parametrize(("template", "reason"), SSRF_CORPUS)
def test_check_url_refuses_the_ssrf_corpus(
    template: str, reason: str, canary: Canaries, nothing_allowed
) -> None:
    with pytest.raises(EgressRefused) as refused:
        check_url(corpus_url(template, canary))

    assert reason.lower() in refused.value.message.lower()
    assert refused.value.code == "egress_refused"
    assert refused.value.status == 400
    assert canary.connections() == []


@pytest.mark.parametrize(("template", "reason"), SSRF_CORPUS)
def test_requests_to_the_ssrf_corpus_are_refused_and_reach_nothing(
    template: str, reason: str, canary: Canaries, nothing_allowed
) -> None:
    with outbound_client(timeout=2, follow_redirects=True) as client, pytest.raises(EgressRefused) as refused:
        client.get(corpus_url(template, canary))

    assert reason.lower() in refused.value.message.lower()
    assert canary.connections() == []


def test_non_standard_numeric_hosts_are_refused_by_check_url_even_when_public(nothing_allowed) -> None:
    with pytest.raises(EgressRefused, match=r"non-standard way of writing the address 8\.8\.8\.8;"):
        check_url("http://134744072/")


def test_refusals_are_logged_as_warnings_without_credentials(
    canary: Canaries, nothing_allowed, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://operator:hunter2@127.0.0.1:{canary.v4.port}/v1?api_key=sk-live-secret"
    caplog.set_level(logging.WARNING, logger="agents.egress")

    with outbound_client(timeout=2) as client, pytest.raises(EgressRefused) as refused:
        client.get(url, headers={"Authorization": "Bearer sk-live-secret"})

    assert refused.value.message == CREDENTIALS_REFUSED
    warnings = [record for record in caplog.records if record.name == "agents.egress"]
    assert [record.levelno for record in warnings] == [logging.WARNING]
    assert "127.0.0.1" in warnings[0].getMessage()
    for secret in ("hunter2", "sk-live-secret", "operator"):
        assert secret not in caplog.text
        assert secret not in refused.value.message


CREDENTIALS_REFUSED = (
    "Refusing a URL with credentials in it (user:password@127.0.0.1): give secrets in the settings "
    "made for them (api_key, secret), never in a URL."
)


@pytest.mark.parametrize("userinfo", ["user:hunter2@", "hunter2@", ":hunter2@", "user:@"])
def test_credentials_in_a_url_are_refused_even_for_an_allowed_host(
    settings, canary: Canaries, userinfo: str
) -> None:
    # given an operator who allows the host
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
    url = f"http://{userinfo}127.0.0.1:{canary.v4.port}/v1"
    sdk = openai.OpenAI(
        base_url=url, api_key="sk-test", max_retries=0, http_client=outbound_client(timeout=2)
    )

    # when the URL is checked, called, and used as an upstream's base_url
    with pytest.raises(EgressRefused) as checked:
        check_url(url)
    with outbound_client(timeout=2) as client, pytest.raises(EgressRefused) as called:
        client.get(url)
    with pytest.raises(EgressRefused) as upstream:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

    # then each is refused without a connection, and without repeating the credentials
    assert checked.value.message == called.value.message == upstream.value.message == CREDENTIALS_REFUSED
    assert canary.connections() == []


def test_the_canaries_do_see_a_request_that_is_allowed(settings, canary: Canaries) -> None:
    # given: the control for every "reached nothing" above
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1", "::1"]

    # when
    with outbound_client(timeout=2) as client:
        for url in (f"http://127.0.0.1:{canary.v4.port}/", f"http://[::1]:{canary.v6.port}/"):
            # the canary hangs up at once: a clean close or a reset, depending on timing
            with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
                client.get(url)

    # then
    assert len(canary.v4.connections()) == 1
    assert len(canary.v6.connections()) == 1


# --- redirects ----------------------------------------------------------------------------------


@pytest.fixture
def allowed_hop(settings, serve, canary: Canaries) -> FakeServer:
    """A server on 127.0.0.2, the only allowed address; the canaries are on 127.0.0.1 and ::1."""
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.2/32"]
    settings.PARLEY_EGRESS_PORTS = [80, 443, canary.v4.port, canary.v6.port]
    return serve("127.0.0.2")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://127.0.0.1:{p}/", "127.0.0.1: it is a loopback address"),
        ("http://2130706433:{p}/", "resolves to 127.0.0.1, a loopback address"),
        ("http://[::ffff:127.0.0.1]:{p}/", "an IPv4-mapped form of 127.0.0.1"),
        ("http://localhost:{p}/", "loopback"),
        ("http://[::1]:{p6}/", "[::1]: it is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata address"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:{p}/", "only http and https"),
    ],
)
def test_a_redirect_to_an_internal_address_is_refused(
    target: str, reason: str, allowed_hop: FakeServer, canary: Canaries
) -> None:
    # given
    location = corpus_url(target, canary)

    # when
    with outbound_client(timeout=2, follow_redirects=True) as client, pytest.raises(EgressRefused) as refused:
        client.get(allowed_hop.url("/redirect"), params={"to": location})

    # then
    assert reason in refused.value.message
    assert [seen["path"].split("?")[0] for seen in allowed_hop.seen] == ["/redirect"]
    assert canary.connections() == []


def test_a_redirect_to_a_url_with_credentials_is_refused(allowed_hop: FakeServer) -> None:
    location = allowed_hop.url("/hello").replace("http://", "http://user:hunter2@")

    with outbound_client(timeout=2, follow_redirects=True) as client, pytest.raises(EgressRefused) as refused:
        client.get(allowed_hop.url("/redirect"), params={"to": location})

    assert refused.value.message == CREDENTIALS_REFUSED.replace("127.0.0.1", "127.0.0.2")
    assert [seen["path"].split("?")[0] for seen in allowed_hop.seen] == ["/redirect"]


def test_redirects_are_not_followed_by_default(allowed_hop: FakeServer, canary: Canaries) -> None:
    location = f"http://127.0.0.1:{canary.v4.port}/"

    with outbound_client(timeout=2) as client:
        response = client.get(allowed_hop.url("/redirect"), params={"to": location})

    assert response.status_code == 302
    assert response.headers["Location"] == location
    assert canary.connections() == []


def test_an_allowed_redirect_is_followed(allowed_hop: FakeServer) -> None:
    with outbound_client(timeout=2, follow_redirects=True) as client:
        response = client.get(allowed_hop.url("/redirect"), params={"to": allowed_hop.url("/hello")})

    assert response.status_code == 200
    assert response.text == "hello"
    assert [seen["path"].split("?")[0] for seen in allowed_hop.seen] == ["/redirect", "/hello"]


def test_redirects_are_capped_at_five_hops(allowed_hop: FakeServer) -> None:
    with outbound_client(timeout=2, follow_redirects=True) as client:
        arrived = client.get(allowed_hop.url(f"/hops?n={MAX_REDIRECTS}"))
        with pytest.raises(httpx2.TooManyRedirects):
            client.get(allowed_hop.url(f"/hops?n={MAX_REDIRECTS + 1}"))

    assert MAX_REDIRECTS == 5
    assert arrived.text == "arrived"
    assert len(arrived.history) == 5
    # 6 requests for the chain that arrived; 6 for the one cut off at its sixth redirect
    assert len(allowed_hop.seen) == 12


# --- the allow-list -----------------------------------------------------------------------------


def test_an_allowed_address_is_called_on_any_port(settings, serve) -> None:
    # given: the fake server's port is random, not in PARLEY_EGRESS_PORTS
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
    settings.PARLEY_EGRESS_PORTS = [80, 443]
    server = serve("127.0.0.1")

    # when
    check_url(server.url("/hello"))
    with outbound_client(timeout=2) as client:
        response = client.get(server.url("/hello"))

    # then
    assert response.status_code == 200
    assert response.text == "hello"
    assert server.seen == [{"path": "/hello", "host": f"127.0.0.1:{server.port}", "cookie": None}]


def test_an_allowed_range_admits_its_addresses_only(settings, serve, canary: Canaries) -> None:
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.0/30", "fd00::/8"]
    settings.PARLEY_EGRESS_PORTS = [80, 443, canary.v4.port]
    inside = serve("127.0.0.2")

    with outbound_client(timeout=2) as client:
        assert client.get(inside.url("/hello")).text == "hello"
        with pytest.raises(EgressRefused, match=re.escape("127.0.0.4: it is a loopback address")):
            client.get(f"http://127.0.0.4:{canary.v4.port}/")
    check_url("http://[fd00::5]:8080/")
    assert canary.connections() == []


def test_an_allowed_ipv4_address_admits_its_ipv4_mapped_form(settings, serve) -> None:
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
    server = serve("127.0.0.1")

    with outbound_client(timeout=2) as client:
        response = client.get(f"http://[::ffff:127.0.0.1]:{server.port}/hello")

    assert response.text == "hello"


def test_an_allowed_host_name_admits_whatever_it_resolves_to(settings, serve, fake_dns) -> None:
    # given
    settings.PARLEY_EGRESS_ALLOW = ["llm.internal.example", "*.tools.internal.example"]
    server = serve("127.0.0.1")
    settings.PARLEY_EGRESS_PORTS = [80, 443, server.port]
    for name in ("llm.internal.example", "calc.tools.internal.example", "llm.other.example"):
        fake_dns.set(name, ["127.0.0.1"])

    # when
    with outbound_client(timeout=2) as client:
        first = client.get(f"http://llm.internal.example:{server.port}/hello")
        second = client.get(f"http://CALC.tools.internal.example.:{server.port}/hello")
        with pytest.raises(
            EgressRefused, match=re.escape("llm.other.example: it resolves to 127.0.0.1, a loopback")
        ):
            client.get(f"http://llm.other.example:{server.port}/hello")

    # then: the connection went to the resolved address, the Host header kept the name
    assert first.text == second.text == "hello"
    assert [seen["host"] for seen in server.seen] == [
        f"llm.internal.example:{server.port}",
        f"calc.tools.internal.example.:{server.port}",
    ]


def test_localhost_is_admitted_by_name(settings, serve) -> None:
    settings.PARLEY_EGRESS_ALLOW = ["localhost"]
    server = serve("127.0.0.1")

    with outbound_client(timeout=2) as client:
        response = client.get(f"http://localhost:{server.port}/hello")

    assert response.text == "hello"


def test_every_resolved_address_must_be_allowed(settings, fake_dns, canary: Canaries) -> None:
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
    settings.PARLEY_EGRESS_PORTS = [80, 443, canary.v4.port]
    fake_dns.set("twofaced.example", ["127.0.0.1", "10.0.0.7"])

    with pytest.raises(
        EgressRefused, match=re.escape("twofaced.example: it resolves to 10.0.0.7, a private address")
    ):
        check_url(f"http://twofaced.example:{canary.v4.port}/")
    with outbound_client(timeout=2) as client, pytest.raises(EgressRefused, match=re.escape("10.0.0.7")):
        client.get(f"http://twofaced.example:{canary.v4.port}/")

    assert canary.connections() == []


def test_the_connection_goes_to_the_address_that_was_checked(
    settings, serve, fake_dns, canary: Canaries
) -> None:
    # given: a name that answers an allowed address once, then a refused one (DNS rebinding)
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.2"]
    server = serve("127.0.0.2")
    fake_dns.set("rebind.example", ["127.0.0.2"], ["127.0.0.1"])

    # when
    with outbound_client(timeout=2) as client:
        response = client.get(f"http://rebind.example:{server.port}/hello")

    # then: one lookup, and the connection went to the address it answered
    assert response.text == "hello"
    assert fake_dns.lookups == ["rebind.example"]
    assert server.seen[0]["host"] == f"rebind.example:{server.port}"
    assert canary.connections() == []


def test_a_public_address_is_refused_on_a_port_not_allowed_and_accepted_on_one_allowed(settings) -> None:
    settings.PARLEY_EGRESS_ALLOW = []
    settings.PARLEY_EGRESS_PORTS = [443, 8443]

    check_url("https://93.184.215.14:8443/v1")
    check_url("https://93.184.215.14/v1")
    with pytest.raises(EgressRefused, match=r"port 80: only ports 443, 8443 are allowed"):
        check_url("http://93.184.215.14/v1")


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/",
        "https://[2606:4700:4700::1111]/",
        "https://[::ffff:8.8.8.8]/",
        "https://[64:ff9b::808:808]/",
        "https://[2002:808:808::]/",
    ],
)
def test_check_url_accepts_public_addresses(settings, url: str) -> None:
    settings.PARLEY_EGRESS_ALLOW = []

    check_url(url)  # literal addresses: nothing is looked up or connected to


def test_check_url_lets_a_name_that_does_not_resolve_yet_pass(settings, fake_dns) -> None:
    settings.PARLEY_EGRESS_ALLOW = []
    fake_dns.set("not-yet.example", [])

    check_url("https://not-yet.example/v1")
    with pytest.raises(EgressRefused, match="port 8080"):
        check_url("https://not-yet.example:8080/v1")


def test_a_name_that_does_not_resolve_is_a_connection_error(settings, fake_dns) -> None:
    settings.PARLEY_EGRESS_ALLOW = []
    fake_dns.set("not-yet.example", [])

    with outbound_client(timeout=2) as client, pytest.raises(httpx2.ConnectError, match="Could not resolve"):
        client.get("https://not-yet.example/v1")


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "fd00::/129", "bad host!", "10.0.0.1:80"])
def test_an_invalid_allow_list_entry_is_a_configuration_error(settings, entry: str) -> None:
    settings.PARLEY_EGRESS_ALLOW = [entry]

    with pytest.raises(ImproperlyConfigured, match="PARLEY_EGRESS_ALLOW"):
        check_url("https://93.184.215.14/")


# --- the official SDK ---------------------------------------------------------------------------


def test_the_openai_sdk_raises_the_refusal_itself_without_retrying(canary: Canaries, nothing_allowed) -> None:
    sdk = openai.OpenAI(
        base_url=f"http://127.0.0.1:{canary.v4.port}/v1",
        api_key="sk-test",
        max_retries=2,
        http_client=outbound_client(timeout=2),
    )
    started = time.monotonic()

    with pytest.raises(EgressRefused, match=re.escape("127.0.0.1: it is a loopback address")):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)

    assert time.monotonic() - started < 0.5  # no backoff: a refusal is not retried
    assert canary.connections() == []


def test_the_openai_sdk_works_through_the_client(settings, serve) -> None:
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
    server = serve("127.0.0.1")
    sdk = openai.OpenAI(
        base_url=server.url("/v1"), api_key="sk-test", max_retries=0, http_client=outbound_client(timeout=2)
    )

    with pytest.raises(openai.NotFoundError):  # the fake server knows no /v1 route: a real answer
        sdk.models.list()

    assert server.seen[0]["path"] == "/v1/models"


# --- size and time caps -------------------------------------------------------------------------


@pytest.fixture
def loopback(settings, serve) -> FakeServer:
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
    return serve("127.0.0.1")


@pytest.mark.parametrize("route", ["bytes", "chunked", "gzip"])
def test_read_capped_refuses_a_body_over_the_cap(loopback: FakeServer, route: str) -> None:
    with (
        outbound_client(timeout=2) as client,
        client.stream("GET", loopback.url(f"/{route}?n=5000")) as response,
        pytest.raises(EgressRefused) as refused,
    ):
        read_capped(response, max_bytes=4999)

    assert refused.value.code == "response_too_large"
    assert refused.value.message == "The response from 127.0.0.1 is larger than 4999 bytes."
    assert response.is_closed


@pytest.mark.parametrize("route", ["bytes", "chunked", "gzip"])
def test_read_capped_returns_a_body_within_the_cap(loopback: FakeServer, route: str) -> None:
    with (
        outbound_client(timeout=2) as client,
        client.stream("GET", loopback.url(f"/{route}?n=5000")) as response,
    ):
        body = read_capped(response, max_bytes=5000)

    assert body == b"x" * 5000


def test_read_capped_also_checks_a_response_already_read(loopback: FakeServer) -> None:
    with outbound_client(timeout=2) as client:
        response = client.get(loopback.url("/bytes?n=100"))

    assert read_capped(response, max_bytes=100) == b"x" * 100
    with pytest.raises(EgressRefused, match="larger than 99 bytes"):
        read_capped(response, max_bytes=99)


def test_a_gzip_bomb_is_cut_off_by_its_decoded_size(loopback: FakeServer) -> None:
    # 20 MB of one byte compress to about 20 kB
    with (
        outbound_client(timeout=5) as client,
        client.stream("GET", loopback.url(f"/gzip?n={20 * 1024 * 1024}")) as response,
        pytest.raises(EgressRefused, match="larger than 1048576 bytes"),
    ):
        read_capped(response, max_bytes=1024 * 1024)


def test_a_slow_answer_times_out(loopback: FakeServer) -> None:
    started = time.monotonic()

    with outbound_client(timeout=0.3) as client, pytest.raises(httpx2.ReadTimeout):
        client.get(loopback.url("/slow?seconds=3"))

    assert time.monotonic() - started < 1.5


def test_a_slow_drip_is_cut_off_by_read_capped(loopback: FakeServer) -> None:
    started = time.monotonic()

    with (
        outbound_client(timeout=1) as client,
        client.stream("GET", loopback.url("/drip?seconds=5")) as response,
        pytest.raises(httpx2.ReadTimeout, match=re.escape("longer than 0.3 s")),
    ):
        read_capped(response, max_bytes=1024 * 1024, max_seconds=0.3)

    assert time.monotonic() - started < 1.5


def test_a_slow_name_lookup_counts_against_the_connect_timeout(settings, fake_dns, monkeypatch) -> None:
    settings.PARLEY_EGRESS_ALLOW = []
    fake_dns.set("slow-dns.example", ["127.0.0.1"])
    answer = socket.getaddrinfo

    def slow_getaddrinfo(*args, **kwargs):
        time.sleep(1.5)
        return answer(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    started = time.monotonic()

    with outbound_client(timeout=0.3) as client, pytest.raises(httpx2.ConnectTimeout, match="Resolving"):
        client.get("https://slow-dns.example/")

    assert time.monotonic() - started < 1.0


# --- the client as callers share it -------------------------------------------------------------


def test_one_client_serves_many_threads(loopback: FakeServer) -> None:
    client = outbound_client(timeout=2)

    with client, ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: client.get(loopback.url("/hello")).status_code, range(32)))

    assert statuses == [200] * 32
    assert len(loopback.seen) == 32


def test_the_client_keeps_no_cookies(loopback: FakeServer) -> None:
    with outbound_client(timeout=2) as client:
        client.get(loopback.url("/cookie"))
        client.get(loopback.url("/hello"))

    assert [seen["cookie"] for seen in loopback.seen] == [None, None]


def test_the_client_ignores_proxy_settings_from_the_environment(loopback: FakeServer, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.9.9.9:3128")

    with outbound_client(timeout=2) as client:
        assert client.get(loopback.url("/hello")).text == "hello"


def _self_signed_certificate(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


def test_tls_certificates_are_verified(settings, serve, tmp_path) -> None:
    # given: an HTTPS server with a certificate no authority signed
    settings.PARLEY_EGRESS_ALLOW = ["127.0.0.1"]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed_certificate(tmp_path))
    server = serve("127.0.0.1", tls=context)

    # when / then
    with (
        outbound_client(timeout=2) as client,
        pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"https://127.0.0.1:{server.port}/hello")


@pytest.mark.parametrize("entry", ["not a host!", "10.0.0.0/33", "::g/64"])
def test_a_bad_allow_list_entry_stops_the_process_at_start_up(entry: str) -> None:
    # given: the web server's application module, loaded with a malformed allow-list
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "PARLEY_"))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.embedded", PARLEY_EGRESS_ALLOW=f"127.0.0.1,{entry}")

    # when
    result = subprocess.run(
        [sys.executable, "-c", "import config.asgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # then: it refuses to start, naming the entry, before any agent calls out
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"django.core.exceptions.ImproperlyConfigured: PARLEY_EGRESS_ALLOW: {entry!r} is not a")
    )
