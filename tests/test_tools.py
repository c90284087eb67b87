"""Server-side tools: the calculator, the clock, http_get and tenant-defined HTTP tools, their
configuration as the Agents API stores it, and how one tool call is answered. HTTP goes to real
servers on loopback, through the real egress helper."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings
from rest_framework import serializers

from agents import secrets
from agents.signing import SIGNATURE_HEADER, sign, verify
from agents.tools import (
    BUILTIN,
    ToolContext,
    ToolError,
    execute_tool_call,
    public_tools_config,
    server_tools_for,
    validate_tools_config,
)
from agents.tools.calculator import evaluate, format_number
from config.errors import validation_error

CONTEXT = ToolContext(organization="acme", agent="support", session_id="sess_1", turn_id="turn_1")
SECRET = "whsec_test_0123456789"
LOOKUP_PARAMETERS = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "pattern": "^[0-9]+$"}},
    "required": ["order_id"],
    "additionalProperties": False,
}


def call(name: str, arguments: object) -> dict:
    encoded = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": encoded}}


def run(entries: list[dict], name: str, arguments: object) -> str:
    tools = server_tools_for(validate_tools_config(entries, previous=[]))
    return execute_tool_call(tools, call(name, arguments), CONTEXT)


# --- a fake customer server on loopback ---------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    port: int
    received: list[Received] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def allowed(self) -> override_settings:
        return override_settings(PARLEY_EGRESS_ALLOW=["127.0.0.1"], PARLEY_EGRESS_PORTS=[self.port])


BIG = b"x" * (70 * 1024)


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake: FakeServer = self.server.fake  # type: ignore[attr-defined]
        fake.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
        return body

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._record()
        if self.path == "/hello":
            self._answer(200, "Grüße from the fake server".encode())
        elif self.path == "/big":
            self._answer(200, BIG)
        elif self.path == "/slow":
            time.sleep(2)
            self._answer(200, b"late")
        elif self.path == "/drip":
            # Each read comes quickly; the whole body takes 3 s.
            self.send_response(200)
            self.send_header("Content-Length", "15")
            self.end_headers()
            try:
                for _ in range(15):
                    self.wfile.write(b"z")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass  # the client gave up, as it should
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/hello")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer(404, b"not found")

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/tool":
            arguments = json.loads(body)["arguments"]
            answer = {"content": f"order {arguments['order_id']} shipped", "extra": 1}
            self._answer(200, json.dumps(answer).encode(), "application/json")
        elif self.path == "/tool-json":
            self._answer(200, b'{"status": "shipped", "eta_days": 2}', "application/json")
        elif self.path == "/tool-text":
            self._answer(200, b"plain answer")
        elif self.path == "/tool-big":
            self._answer(200, b"y" * (300 * 1024))
        else:
            self._answer(500, b"database is down")


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakeServer(port=httpd.server_address[1])
    httpd.fake = fake  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(fake_server: FakeServer) -> FakeServer:
    fake_server.received.clear()
    return fake_server


# --- calculator ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0.175 * 2380", "416.5"),
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("2 ** 10", "1024"),
        ("2 ** 3 ** 2", "512"),
        ("-2 ** 2", "-4"),
        ("(-2) ** 2", "4"),
        ("-3 + +5", "2"),
        ("--4", "4"),
        ("7 / 2", "3.5"),
        ("6 / 3", "2"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("-7 % 3", "2"),
        ("0.1 + 0.2", "0.3"),
        ("1 / 3", "0.333333333333"),
        ("2 ** 0.5", "1.41421356237"),
        ("2 ** -1", "0.5"),
        ("10 ** 20", "100000000000000000000"),
        ("1e3 + 1", "1001"),
        ("2_380 * 2", "4760"),
        ("  ( 12.5 + 7 ) * 3 / 4 \n", "14.625"),
        ("-0.0", "0"),
        ("1.5e-7 * 2", "3e-07"),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, expected: str) -> None:
    assert format_number(evaluate(expression)) == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os')", "only numbers"),
        ("__import__('os').system('true')", "only numbers"),
        ("().__class__", "only numbers"),
        ("().__class__.__bases__[0].__subclasses__()", "only numbers"),
        ("x + 1", "only numbers"),
        ("abs(-1)", "only numbers"),
        ("'a' * 3", "only numbers"),
        ("f'{1}'", "only numbers"),
        ("lambda: 1", "only numbers"),
        ("[x for x in (1, 2)]", "only numbers"),
        ("[1][0]", "only numbers"),
        ("True + 1", "only numbers"),
        ("1j * 2", "only numbers"),
        ("1 if 1 else 2", "only numbers"),
        ("1 < 2", "only numbers"),
        ("1 << 1000000", "only numbers"),
        ("2 ^ 10", "write **"),
        ("2,380", "commas"),
        ("2 ** 99999999", "too large"),
        ("9 ** 9 ** 9", "too large"),
        ("(10 ** 200) * (10 ** 200)", "too large"),
        ("1e308 * 10", "too large"),
        ("1e999", "too large"),
        ("9" * 400, "too large"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("5 % 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("(-8) ** (1 / 3)", "not a real number"),
        ("1 +", "not valid arithmetic"),
        ("", "not valid arithmetic"),
        ("1\x00", "not valid arithmetic"),
        ("1 + " * 200 + "1", "longer than 500"),
        ("(" * 300 + "1" + ")" * 300, "longer than 500"),
        ("(" * 199 + "1" + ")" * 199, ""),  # deep but within the parser's limits: allowed
    ],
)
def test_calculator_refuses_what_is_not_plain_arithmetic(expression: str, reason: str) -> None:
    if not reason:
        assert format_number(evaluate(expression)) == "1"
        return
    with pytest.raises(ToolError, match=re.escape(reason)):
        evaluate(expression)


def test_calculator_call_answers_the_number_or_an_error() -> None:
    entries = [{"type": "calculator"}]
    assert run(entries, "calculator", {"expression": "0.175 * 2380"}) == "416.5"
    assert run(entries, "calculator", {"expression": "__import__('os')"}) == (
        "error: only numbers and the operators + - * / // % ** are allowed"
    )
    assert run(entries, "calculator", {"expression": "1 / 0"}) == "error: division by zero"
    assert run(entries, "calculator", {"expression": "1" * 501}).startswith("error: invalid arguments: ")


# --- current_time --------------------------------------------------------------------------------

ISO_WITH_WEEKDAY = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d) \((\w+)\)$")


def parsed_time(answer: str) -> datetime:
    match = ISO_WITH_WEEKDAY.match(answer)
    assert match, answer
    moment = datetime.fromisoformat(match[1])
    assert match[2] == moment.strftime("%A")
    assert abs(moment - datetime.now(UTC)) < timedelta(seconds=5)
    return moment


def test_current_time_defaults_to_utc() -> None:
    moment = parsed_time(run([{"type": "current_time"}], "current_time", {}))
    assert moment.utcoffset() == timedelta(0)
    assert run([{"type": "current_time"}], "current_time", "").endswith(")")  # "" means no arguments


def test_current_time_in_a_named_zone() -> None:
    # Asia/Kolkata has no daylight saving time: always +05:30.
    answer = run([{"type": "current_time"}], "current_time", {"timezone": "Asia/Kolkata"})
    assert "+05:30 (" in answer
    assert parsed_time(answer).utcoffset() == timedelta(hours=5, minutes=30)


def test_current_time_uses_the_agents_default_zone() -> None:
    entries = [{"type": "current_time", "default_timezone": "Asia/Kolkata"}]
    assert "+05:30 (" in run(entries, "current_time", {})


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "Europe/"])
def test_current_time_refuses_an_unknown_zone(zone: str) -> None:
    answer = run([{"type": "current_time"}], "current_time", {"timezone": zone})
    assert answer == f"error: unknown time zone {zone!r}: use an IANA name such as Europe/Paris"


# --- http_get ------------------------------------------------------------------------------------


def http_get(allowed_hosts: list[str], url: str, **settings: object) -> str:
    return run([{"type": "http_get", "allowed_hosts": allowed_hosts, **settings}], "http_get", {"url": url})


def test_http_get_fetches_from_an_allowed_host(server: FakeServer) -> None:
    with server.allowed():
        answer = http_get(["127.0.0.1"], server.url("/hello"))
    assert answer == "HTTP 200\nContent-Type: text/plain; charset=utf-8\n\nGrüße from the fake server"
    assert [(item.method, item.path) for item in server.received] == [("GET", "/hello")]


def test_http_get_does_not_follow_redirects(server: FakeServer) -> None:
    with server.allowed():
        answer = http_get(["127.0.0.1"], server.url("/moved"))
    assert answer.startswith("HTTP 302\n")
    assert [item.path for item in server.received] == ["/moved"]


def test_http_get_refuses_a_host_not_allowed(server: FakeServer) -> None:
    with server.allowed():
        answer = http_get(["example.com", "*.example.org"], server.url("/hello"))
    assert answer == "error: the host 127.0.0.1 is not allowed; allowed: example.com, *.example.org"
    assert server.received == []


def test_http_get_refuses_a_body_over_the_cap(server: FakeServer) -> None:
    with server.allowed():
        answer = http_get(["127.0.0.1"], server.url("/big"), max_bytes=64 * 1024)
    assert answer == "error: The response from 127.0.0.1 is larger than 65536 bytes."


def test_http_get_takes_a_bigger_cap_when_configured(server: FakeServer) -> None:
    with server.allowed():
        answer = http_get(["127.0.0.1"], server.url("/big"), max_bytes=128 * 1024)
    assert answer.endswith("\n\n" + BIG.decode())


def test_http_get_is_refused_by_egress_without_the_operators_allow_list(server: FakeServer) -> None:
    with override_settings(PARLEY_EGRESS_ALLOW=[], PARLEY_EGRESS_PORTS=[server.port]):
        answer = http_get(["127.0.0.1"], server.url("/hello"))
    assert answer.startswith("error: Refusing to connect to 127.0.0.1: it is a loopback address")
    assert server.received == []


def test_http_get_refuses_a_name_that_resolves_to_loopback(server: FakeServer) -> None:
    with override_settings(PARLEY_EGRESS_ALLOW=[], PARLEY_EGRESS_PORTS=[server.port]):
        answer = http_get(["localhost"], server.url("/hello", host="localhost"))
    assert answer.startswith("error: Refusing to connect to localhost")
    assert server.received == []


@pytest.mark.parametrize("path", ["/slow", "/drip"])
def test_http_get_gives_up_after_its_timeout(server: FakeServer, path: str) -> None:
    started = time.monotonic()
    with server.allowed():
        answer = http_get(["127.0.0.1"], server.url(path), timeout=1)
    assert answer == "error: no complete answer within 1 s"
    assert time.monotonic() - started < 1.9


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "error: only http and https URLs are allowed"),
        ("ftp://127.0.0.1/", "error: only http and https URLs are allowed"),
        ("http:///path", "error: the URL has no host"),
        (
            "http://user:pw@127.0.0.1/",
            "error: Refusing a URL with credentials in it (user:password@127.0.0.1): give secrets in the "
            "settings made for them (api_key, secret), never in a URL.",
        ),
        ("http://127.0.0.1:port/", "error: not a valid URL"),
    ],
)
def test_http_get_refuses_urls_that_are_not_plain_http(server: FakeServer, url: str, message: str) -> None:
    with server.allowed():
        assert http_get(["127.0.0.1"], url) == message
    assert server.received == []


def test_http_get_settings_are_checked() -> None:
    with pytest.raises(serializers.ValidationError) as refused:
        validate_tools_config(
            [{"type": "http_get", "allowed_hosts": ["https://example.com/x"], "max_bytes": 2 * 1024 * 1024}],
            previous=[],
        )
    errors = refused.value.detail[0]
    assert set(errors) == {"allowed_hosts", "max_bytes"}
    with pytest.raises(serializers.ValidationError) as refused:
        validate_tools_config([{"type": "http_get", "allowed_hosts": []}], previous=[])
    assert set(refused.value.detail[0]) == {"allowed_hosts"}
    with pytest.raises(serializers.ValidationError) as refused:
        validate_tools_config([{"type": "http_get", "allowed_hosts": ["a.com"], "timeout": 31}], previous=[])
    assert set(refused.value.detail[0]) == {"timeout"}


# --- tenant-defined HTTP tools -------------------------------------------------------------------


def lookup_tool(url: str, **settings: object) -> dict:
    return {
        "type": "http",
        "name": "lookup_order",
        "description": "Find an order",
        "parameters": LOOKUP_PARAMETERS,
        "url": url,
        "secret": SECRET,
        **settings,
    }


def test_http_tool_posts_signed_json_and_answers_the_content(server: FakeServer) -> None:
    with server.allowed():
        stored = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
        answer = execute_tool_call(
            server_tools_for(stored), call("lookup_order", {"order_id": "42"}), CONTEXT
        )
    assert answer == "order 42 shipped"
    [request] = server.received
    assert (request.method, request.path) == ("POST", "/tool")
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "tool": "lookup_order",
        "arguments": {"order_id": "42"},
        "context": {"organization": "acme", "agent": "support", "session_id": "sess_1", "turn_id": "turn_1"},
    }
    signature = request.headers[SIGNATURE_HEADER]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", signature)
    assert verify(SECRET, request.body, signature)
    assert not verify(SECRET, request.body.replace(b"42", b"43"), signature)
    assert not verify("another secret", request.body, signature)


def test_http_tool_answers_json_without_content_as_its_text(server: FakeServer) -> None:
    with server.allowed():
        assert run([lookup_tool(server.url("/tool-json"))], "lookup_order", {"order_id": "1"}) == (
            '{"status": "shipped", "eta_days": 2}'
        )
        assert (
            run([lookup_tool(server.url("/tool-text"))], "lookup_order", {"order_id": "1"}) == "plain answer"
        )


def test_http_tool_error_status_is_told_to_the_model(server: FakeServer) -> None:
    with server.allowed():
        answer = run([lookup_tool(server.url("/tool-fails"))], "lookup_order", {"order_id": "1"})
    assert answer == "error: the tool's endpoint answered HTTP 500: database is down"


def test_http_tool_answer_over_the_cap_is_an_error(server: FakeServer) -> None:
    with server.allowed():
        answer = run([lookup_tool(server.url("/tool-big"))], "lookup_order", {"order_id": "1"})
    assert answer == "error: The response from 127.0.0.1 is larger than 262144 bytes."


def test_http_tool_is_refused_by_egress_at_run_time_without_the_allow_list(server: FakeServer) -> None:
    with server.allowed():
        stored = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
    with override_settings(PARLEY_EGRESS_ALLOW=[], PARLEY_EGRESS_PORTS=[server.port]):
        answer = execute_tool_call(server_tools_for(stored), call("lookup_order", {"order_id": "1"}), CONTEXT)
    assert answer.startswith("error: Refusing to connect to 127.0.0.1: it is a loopback address")
    assert server.received == []


def test_http_tool_with_an_unreadable_secret_is_an_error(server: FakeServer) -> None:
    with server.allowed():
        [entry] = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
        entry["secret"] = {"encrypted": "not a fernet token"}
        answer = execute_tool_call(
            server_tools_for([entry]), call("lookup_order", {"order_id": "1"}), CONTEXT
        )
    assert answer == "error: the tool's signing secret cannot be read; set it again"
    assert server.received == []


# --- signatures ----------------------------------------------------------------------------------


def test_signature_verifies_only_the_same_body_secret_and_a_recent_time() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body, timestamp=1_700_000_000)
    assert verify(SECRET, body, header, now=1_700_000_100)
    assert not verify(SECRET, body, header, now=1_700_000_301)  # replayed too late
    assert not verify(SECRET, body + b" ", header, now=1_700_000_000)
    assert not verify(SECRET[:-1], body, header, now=1_700_000_000)
    # A rotated secret: either signature is enough.
    rotated = f"{header},v1={sign('old secret', body, timestamp=1_700_000_000).split('v1=')[1]}"
    assert verify("old secret", body, rotated, now=1_700_000_000)
    assert verify(SECRET, body, sign(SECRET, body))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=,v1=",
        "t=abc,v1=00",
        "v1=00",
        "t=1700000000",
        "t=1700000000,t=1700000000,v1=00",
        "t=\u0661\u0667,v1=\u00e9",  # non-ASCII digits and signature
    ],
)
def test_malformed_signatures_do_not_verify(header: str) -> None:
    assert verify(SECRET, b"{}", header, now=1_700_000_000) is False


# --- execute_tool_call ---------------------------------------------------------------------------


def test_malformed_json_arguments_are_answered_as_an_error() -> None:
    answer = run([{"type": "calculator"}], "calculator", '{"expression": "1 + 1"')
    assert answer.startswith("error: arguments are not valid JSON: ")


def test_arguments_that_are_not_an_object_are_answered_as_an_error() -> None:
    assert run([{"type": "calculator"}], "calculator", "[1, 2]") == "error: arguments must be a JSON object"


def test_arguments_against_the_schema_are_answered_as_an_error(server: FakeServer) -> None:
    assert run([{"type": "calculator"}], "calculator", {}) == (
        "error: invalid arguments: 'expression' is a required property"
    )
    assert run([{"type": "calculator"}], "calculator", {"expression": 12}) == (
        "error: invalid arguments: expression: 12 is not of type 'string'"
    )
    with server.allowed():
        answer = run([lookup_tool(server.url("/tool"))], "lookup_order", {"order_id": "4x"})
    assert answer == "error: invalid arguments: order_id: '4x' does not match '^[0-9]+$'"
    assert server.received == []


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_catastrophic_pattern_is_cut_off_and_answered_as_an_error(server: FakeServer, where: str) -> None:
    # given: a tenant's schema whose regular expression backtracks exponentially on a near match
    evil = "^(a|a)*$"
    if where == "pattern":
        parameters = {"type": "object", "properties": {"code": {"type": "string", "pattern": evil}}}
        arguments = {"code": "a" * 40 + "!"}
        where_in_arguments = "code: "
    else:
        parameters = {"type": "object", "patternProperties": {evil: {"type": "string"}}}
        arguments = {"a" * 40 + "!": "x"}
        where_in_arguments = ""
    with server.allowed():
        tool = lookup_tool(server.url("/tool"), parameters=parameters)

        # when: the model's arguments are checked against it
        started = time.monotonic()
        answer = run([tool], "lookup_order", arguments)
        elapsed = time.monotonic() - started

    # then: the match is cut off after its time bound, the model is told, the tool is not called
    assert answer == (
        f"error: invalid arguments: {where_in_arguments}"
        f"the pattern '{evil}' took longer than 0.1 s on this value"
    )
    assert elapsed < 5  # with Python's re this takes hours
    assert server.received == []


def test_an_unknown_tool_is_answered_as_an_error() -> None:
    assert (
        run([{"type": "calculator"}], "rm_rf", {})
        == "error: unknown tool 'rm_rf'; available tools: calculator"
    )
    assert (
        execute_tool_call({}, {"id": "call_1"}, CONTEXT) == "error: unknown tool None; available tools: none"
    )


def test_an_unexpected_failure_is_logged_and_answered_plainly(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        name = "broken"

        def definition(self) -> dict:
            return {"type": "function", "function": {"name": "broken", "parameters": {"type": "object"}}}

        def run(self, arguments: dict, context: ToolContext) -> str:
            raise RuntimeError("internal detail")

    answer = execute_tool_call({"broken": Broken()}, call("broken", {}), CONTEXT)
    assert answer == "error: the tool failed"
    assert "internal detail" in caplog.text


# --- configuration -------------------------------------------------------------------------------


def refused(entries: object, previous: list[dict] | None = None) -> dict:
    with pytest.raises(serializers.ValidationError) as error:
        validate_tools_config(entries, previous=previous or [])
    return error.value.detail


def test_builtin_types() -> None:
    assert set(BUILTIN) == {"calculator", "current_time", "http_get", "http"}


def test_tools_config_must_be_a_list_of_objects() -> None:
    assert refused({"type": "calculator"}) == ["Expected a list of tools."]
    assert refused(["calculator"]) == {0: ["Expected a JSON object."]}


def test_unknown_tool_type_is_refused() -> None:
    assert refused([{"type": "calculator"}, {"type": "shell"}]) == {
        1: {"type": ["Expected one of: calculator, current_time, http_get, http."]}
    }
    assert set(refused([{"name": "x"}])[0]) == {"type"}
    assert set(refused([{"type": ["calculator"]}])[0]) == {"type"}


def test_unknown_setting_is_refused() -> None:
    assert refused([{"type": "calculator", "precision": 3}]) == {0: {"precision": ["Unknown setting."]}}


@pytest.mark.parametrize("name", ["", "has space", "dots.not.allowed", "x" * 65, "émoji"])
def test_bad_tool_name_is_refused(name: str, server: FakeServer) -> None:
    with server.allowed():
        errors = refused([lookup_tool(server.url("/tool"), name=name)])
    assert set(errors[0]) == {"name"}


def test_http_tool_needs_a_name_url_and_secret() -> None:
    errors = refused([{"type": "http"}])
    assert set(errors[0]) == {"name", "url"}
    with override_settings(PARLEY_EGRESS_ALLOW=["127.0.0.1"], PARLEY_EGRESS_PORTS=[8080]):
        errors = refused([{"type": "http", "name": "t", "url": "http://127.0.0.1:8080/"}])
    assert errors == {0: {"secret": ["This field is required."]}}


def test_duplicate_tool_names_are_refused(server: FakeServer) -> None:
    with server.allowed():
        errors = refused(
            [
                {"type": "calculator"},
                lookup_tool(server.url("/tool"), name="calculator"),
                {"type": "calculator"},
                {"type": "current_time", "name": "clock"},
            ]
        )
    assert errors == {
        1: {"name": ["Another tool of this agent is already named 'calculator'."]},
        2: {"type": ["Another tool of this agent is already named 'calculator'."]},
    }


def test_two_http_get_tools_with_their_own_names(server: FakeServer) -> None:
    stored = validate_tools_config(
        [
            {"type": "http_get", "allowed_hosts": ["api.example.com"]},
            {"type": "http_get", "name": "docs_get", "allowed_hosts": ["*.example.org"]},
        ],
        previous=[],
    )
    tools = server_tools_for(stored)
    assert set(tools) == {"http_get", "docs_get"}
    assert "*.example.org" in tools["docs_get"].definition()["function"]["description"]


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "objekt"},
        {"type": "object", "properties": {"a": {"type": 5}}},
        {"type": "object", "required": "a"},
        {"type": "string"},
        [],
        "not a schema",
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "(unclosed"}}},
        {"type": "object", "patternProperties": {"[z-a]": {"type": "string"}}},
    ],
)
def test_bad_parameters_schema_is_refused(parameters: object, server: FakeServer) -> None:
    with server.allowed():
        errors = refused([lookup_tool(server.url("/tool"), parameters=parameters)])
    assert set(errors[0]) == {"parameters"}


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/tool",
        "file:///etc/passwd",
        "not a url",
        "http://user:pass@127.0.0.1/",
    ],
)
def test_http_tool_url_must_be_plain_http(url: str, server: FakeServer) -> None:
    with server.allowed():
        errors = refused([lookup_tool(url)])
    assert set(errors[0]) == {"url"}


def test_http_tool_url_is_refused_by_egress_when_the_allow_list_is_empty(server: FakeServer) -> None:
    # given an operator who allows no internal hosts
    with override_settings(PARLEY_EGRESS_ALLOW=[], PARLEY_EGRESS_PORTS=[server.port]):
        # when a tenant points a tool at loopback
        errors = refused([{"type": "calculator"}, lookup_tool(server.url("/tool"))])
    # then the API can name the field
    assert set(errors) == {1}
    assert set(errors[1]) == {"url"}
    error = validation_error({"tools": errors})
    assert error.param == "tools[1].url"
    assert error.status == 400


def test_secret_is_sealed_and_never_shown(server: FakeServer) -> None:
    with server.allowed():
        [stored] = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
    assert secrets.is_sealed(stored["secret"])
    assert secrets.unseal(stored["secret"]) == SECRET
    assert SECRET not in json.dumps(stored)
    public = public_tools_config([stored, {"type": "calculator"}])
    assert public == [
        {
            "type": "http",
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": LOOKUP_PARAMETERS,
            "url": server.url("/tool"),
            "secret_set": True,
        },
        {"type": "calculator"},
    ]
    assert SECRET not in json.dumps(public)
    assert stored["secret"]["encrypted"] not in json.dumps(public)


def test_secret_is_kept_on_update_when_omitted(server: FakeServer) -> None:
    with server.allowed():
        previous = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
        # when the tenant sends back what it was shown, with a new description
        [shown] = public_tools_config(previous)
        updated = validate_tools_config([{**shown, "description": "Find an order by id"}], previous=previous)
        answer = execute_tool_call(
            server_tools_for(updated), call("lookup_order", {"order_id": "7"}), CONTEXT
        )
    assert updated[0]["secret"] == previous[0]["secret"]
    assert updated[0]["description"] == "Find an order by id"
    assert answer == "order 7 shipped"
    assert verify(SECRET, server.received[0].body, server.received[0].headers[SIGNATURE_HEADER])


def test_secret_is_replaced_when_given(server: FakeServer) -> None:
    with server.allowed():
        previous = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
        updated = validate_tools_config(
            [lookup_tool(server.url("/tool"), secret="new secret")], previous=previous
        )
    assert secrets.unseal(updated[0]["secret"]) == "new secret"


def test_secret_is_not_taken_from_a_tool_of_another_name(server: FakeServer) -> None:
    with server.allowed():
        previous = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
        entry = {key: value for key, value in lookup_tool(server.url("/tool")).items() if key != "secret"}
        errors = refused([{**entry, "name": "renamed"}], previous=previous)
    assert errors == {0: {"secret": ["This field is required."]}}


def test_a_sealed_secret_is_accepted_only_as_the_stored_one(server: FakeServer) -> None:
    with server.allowed():
        previous = validate_tools_config([lookup_tool(server.url("/tool"))], previous=[])
        # the stored list validated again is unchanged
        assert validate_tools_config(previous, previous=previous) == previous
        # a sealed value from elsewhere (another agent, another tenant) is not
        foreign = secrets.seal("someone else's secret")
        errors = refused([lookup_tool(server.url("/tool"), secret=foreign)], previous=previous)
    assert errors == {0: {"secret": ["Expected the secret as a string."]}}


def test_server_tools_have_openai_definitions(server: FakeServer) -> None:
    with server.allowed():
        stored = validate_tools_config(
            [
                {"type": "calculator"},
                {"type": "current_time"},
                {"type": "http_get", "allowed_hosts": ["example.com"]},
                lookup_tool(server.url("/tool")),
            ],
            previous=[],
        )
    tools = server_tools_for(stored)
    assert list(tools) == ["calculator", "current_time", "http_get", "lookup_order"]
    for name, tool in tools.items():
        definition = tool.definition()
        assert definition["type"] == "function"
        assert definition["function"]["name"] == name
        assert definition["function"]["description"]
        assert definition["function"]["parameters"]["type"] == "object"
    assert tools["lookup_order"].definition()["function"]["parameters"] == LOOKUP_PARAMETERS


def test_stored_tools_of_an_unknown_type_are_skipped() -> None:
    stored = [{"type": "retired_tool"}, {"type": ["odd"]}, "junk", {"type": "calculator"}]
    assert list(server_tools_for(stored)) == ["calculator"]
    assert public_tools_config(stored) == [{"type": "calculator"}]


def test_tool_calls_are_quick(server: FakeServer) -> None:
    # The hostile inputs are refused before any work: together well under a second.
    started = time.monotonic()
    for expression in ["9 ** 9 ** 9", "2 ** 99999999", "(10 ** 300) ** 10"]:
        with pytest.raises(ToolError):
            evaluate(expression)
    assert time.monotonic() - started < 1
