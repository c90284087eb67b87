"""Fakes of what is outside Parley, as real HTTP servers on loopback: an OpenAI-compatible
upstream LLM and a customer webhook. Each records what it received.

The fake upstream's behaviour is chosen by the `model` the agent asks for:
- "fake-echo": streams "upstream says: <last user text>" a word at a time, with usage;
- "fake-keep-alive": as fake-echo, in a chunked body that leaves the connection open for the next
  request (the others end their body by closing it);
- "fake-tools": two parallel tool calls (to the request's first two tools), the arguments split
  into fragments of 1-3 characters;
- "fake-429-once": 429 (Retry-After: 0) the first time it sees a conversation, then fake-echo;
- "fake-500": always 500; "fake-400": always 400 with an error message;
- "fake-401-echo": 401 whose message quotes the Authorization header it received, as upstreams
  that refuse a key do;
- "fake-cut": three chunks, then the connection drops;
- "fake-drip": six words, 0.4 s apart;
- "fake-trickle": one chunk, then a newline every 0.2 s for ever (until the client goes, which
  the server records: FakeServer.gone);
- "fake-calc": calls the `calculator` tool with 0.175 * 2380, then answers with the result;
- "fake-bad-args": calls `calculator` with malformed JSON arguments, then answers;
- "fake-loop": calls `calculator` every time;
- "fake-mixed": calls `calculator` and the client's first tool in one message, then answers.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agents.signing import verify

# How long an answer that never ends (a fake's "trickle" behaviours) is held open at most.
HOLD_SECONDS = 60


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    client_port: int = 0  # the port of the connection it came on

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeServer:
    server: ThreadingHTTPServer
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # When (time.monotonic()) the client of an answer held open went away, by the marker of its
    # request (the last user text).
    gone: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def wait_until_gone(self, marker: str, timeout: float) -> float | None:
        """When the client of the answer to `marker` went away, waiting up to `timeout` s for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if marker in self.gone:
                    return self.gone[marker]
            time.sleep(0.02)
        return None

    def received(self, marker: str) -> list[Recorded]:
        """The requests whose body contains `marker` (tests put a unique word in their messages)."""
        with self.lock:
            return [request for request in self.requests if marker.encode() in request.body]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(handler_class: type[BaseHTTPRequestHandler]) -> FakeServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    server.daemon_threads = True
    fake = FakeServer(server=server)
    server.fake = fake  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def record(self) -> Recorded:
        length = int(self.headers.get("Content-Length", 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        recorded = Recorded(self.path, headers, self.rfile.read(length), self.client_address[1])
        with self.server.fake.lock:  # type: ignore[attr-defined]
            self.server.fake.requests.append(recorded)  # type: ignore[attr-defined]
        return recorded

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    # Whether the events of this answer go in chunks of a body that keeps the connection open
    # (as real upstreams answer), rather than in a body that ends when the connection closes.
    chunked = False

    def start_events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def event(self, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        text = f"data: {data}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(text), text) if self.chunked else text)
        self.wfile.flush()

    def end_events(self) -> None:
        """The end of a chunked body; the connection stays open for the next request."""
        if self.chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def hold_open(self, marker: str, *, keep_alive: bytes = b"") -> None:
        """Keep the answer open, writing `keep_alive` (if any) every 0.2 s, until the client goes
        (at most HOLD_SECONDS); record when it went (FakeServer.gone)."""
        deadline = time.monotonic() + HOLD_SECONDS
        try:
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.2)
                # The request was read whole: all that can come now is the end of the connection.
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    break
                if keep_alive:
                    self.wfile.write(keep_alive)
                    self.wfile.flush()
            else:
                return
        except OSError:  # reset, or a broken pipe: gone too
            pass
        with self.server.fake.lock:  # type: ignore[attr-defined]
            self.server.fake.gone[marker] = time.monotonic()  # type: ignore[attr-defined]
        self.close_connection = True


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            content = message.get("content")
            return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    return ""


def _tool_results(messages: list[dict]) -> list[dict]:
    return [message for message in messages if message["role"] == "tool"]


class UpstreamHandler(_Handler):
    seen_conversations: set[str] = set()

    def do_POST(self) -> None:
        request = self.record().json
        model = request.get("model", "")
        messages = request.get("messages", [])
        self.chunked = model == "fake-keep-alive"
        if model == "fake-500":
            self.send_json(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
        elif model == "fake-401-echo":
            self.send_json(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {self.headers.get('Authorization')}.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        elif model == "fake-400":
            self.send_json(
                400,
                {
                    "error": {
                        "message": "temperature is not supported by this model",
                        "type": "invalid_request_error",
                    }
                },
            )
        elif model == "fake-429-once" and _last_user_text(messages) not in self.seen_conversations:
            self.seen_conversations.add(_last_user_text(messages))
            self.send_json(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
        elif model == "fake-tools":
            self.stream_tool_calls(
                request,
                [
                    (t["function"]["name"], {"order_id": "A-17", "note": "fragmented"})
                    for t in request["tools"][:2]
                ],
            )
        elif model == "fake-drip":
            self.stream_text(request, "slow and steady wins the race", pause=0.4)
        elif model == "fake-trickle":
            self.start_events()
            self.event(self.chunk(request, {"role": "assistant", "content": "thinking"}))
            self.hold_open(_last_user_text(messages), keep_alive=b"\n")
        elif model == "fake-cut":
            self.start_events()
            for word in ("one", " two", " three"):
                self.event(self.chunk(request, {"content": word}))
            self.wfile.flush()
            self.connection.shutdown(2)
        elif model in ("fake-calc", "fake-bad-args", "fake-loop", "fake-mixed") and (
            model == "fake-loop" or not _tool_results(messages)
        ):
            calls = [("calculator", {"expression": "0.175 * 2380"})]
            if model == "fake-bad-args":
                calls = [("calculator", '{"expression": ')]
            if model == "fake-mixed":
                client_tool = next(t for t in request["tools"] if t["function"]["name"] != "calculator")
                calls.append((client_tool["function"]["name"], {"order_id": "A-17"}))
            self.stream_tool_calls(request, calls)
        elif model in ("fake-calc", "fake-bad-args", "fake-mixed"):
            results = "; ".join(str(message.get("content")) for message in _tool_results(messages))
            self.stream_text(request, f"The tools said: {results}")
        else:
            self.stream_text(request, f"upstream says: {_last_user_text(messages)}")

    def chunk(self, request: dict, delta: dict, finish_reason: str | None = None) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model"),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def usage(self, request: dict) -> dict:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.get("model"),
            "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }

    def stream_text(self, request: dict, text: str, pause: float = 0.0) -> None:
        self.start_events()
        self.event(self.chunk(request, {"role": "assistant", "content": ""}))
        for index, word in enumerate(text.split(" ")):
            if index and pause:
                time.sleep(pause)
            self.event(self.chunk(request, {"content": word if index == 0 else f" {word}"}))
        self.event(self.chunk(request, {}, "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            self.event(self.usage(request))
        self.event("[DONE]")
        self.end_events()

    def stream_tool_calls(self, request: dict, calls: list[tuple[str, Any]]) -> None:
        self.start_events()
        self.event(self.chunk(request, {"role": "assistant", "content": None}))
        for index, (name, arguments) in enumerate(calls):
            head = {
                "index": index,
                "id": f"call_fake_{index}_{int(time.time() * 1000) % 100000}",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            self.event(self.chunk(request, {"tool_calls": [head]}))
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            pieces, position, size = [], 0, 1
            while position < len(text):
                pieces.append(text[position : position + size])
                position += size
                size = size % 3 + 1
            for piece in pieces:
                self.event(
                    self.chunk(request, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                )
        self.event(self.chunk(request, {}, "tool_calls"))
        if (request.get("stream_options") or {}).get("include_usage"):
            self.event(self.usage(request))
        self.event("[DONE]")


WEBHOOK_SECRET = "whsec-test-0123456789abcdef"
# The signing secret of a webhook that leaks it: new in every test run, so that a test can look
# for it in logs and databases.
LEAKY_WEBHOOK_SECRET = f"whsec-leaky-{uuid.uuid4().hex}"
# Text with a NUL and a lone surrogate, which JSON can carry (as escapes) and PostgreSQL cannot store.
UNSTORABLE_TEXT = "nul[\x00] surrogate[\ud800]"


class WebhookHandler(_Handler):
    """Answers by path: /json (JSON), /sse (an event stream), /tools (a JSON tool call), /flaky
    (500 the first time a conversation is seen, then JSON), /leak (signed with
    LEAKY_WEBHOOK_SECRET: 401 quoting the secret and the Parley-Signature header it received),
    /unstorable (JSON) and /unstorable-sse (an event stream) answering UNSTORABLE_TEXT, and
    /unstorable-tool, an HTTP tool's endpoint answering it as the tool's result.

    Answers that never end, held open until the client goes (recorded in FakeServer.gone):
    /trickle (an event stream: one chunk, then a newline every 0.2 s), /trickle-json (JSON
    headers, then a space every 0.2 s), /silent (nothing at all). /flood: an event stream whose
    one line never ends (up to 64 MiB)."""

    seen: set[str] = set()

    def do_POST(self) -> None:
        if self.path == "/unstorable-tool":
            # An HTTP tool's endpoint (its calls are signed with WEBHOOK_SECRET too), answering text
            # that PostgreSQL cannot store.
            self.record()
            self.send_json(200, {"content": UNSTORABLE_TEXT})
            return
        if self.path == "/leak":
            self.record()
            signature = self.headers.get("Parley-Signature", "")
            self.send_json(
                401,
                {"error": f"signature {signature} does not match the secret {LEAKY_WEBHOOK_SECRET}"},
            )
            return
        recorded = self.record()
        valid = verify(WEBHOOK_SECRET, recorded.body, self.headers.get("Parley-Signature", ""))
        recorded.headers["x-signature-valid"] = str(valid)
        if not valid:
            self.send_json(401, {"error": "bad signature"})
            return
        turn = recorded.json
        said = _last_user_text(turn["messages"])
        if self.path == "/flaky" and said not in self.seen:
            self.seen.add(said)
            self.send_json(500, {"error": "try again"})
        elif self.path == "/unstorable":
            self.send_json(200, {"content": f"{UNSTORABLE_TEXT} {said}"})
        elif self.path == "/unstorable-sse":
            self.start_events()
            for text in (UNSTORABLE_TEXT, f" {said}"):
                self.event({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
            self.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self.event("[DONE]")
        elif self.path == "/sse":
            self.start_events()
            for word in ("hook", " streams:", f" {said}"):
                self.event({"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
            self.event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self.event("[DONE]")
        elif self.path == "/trickle":
            self.start_events()
            self.event({"choices": [{"index": 0, "delta": {"content": "thinking"}, "finish_reason": None}]})
            self.hold_open(said, keep_alive=b"\n")
        elif self.path == "/trickle-json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.hold_open(said, keep_alive=b" ")
        elif self.path == "/silent":
            self.hold_open(said)
        elif self.path == "/flood":
            self.start_events()
            self.wfile.write(b"data: ")
            try:
                for _ in range(1024):
                    self.wfile.write(b"x" * 65536)
            except OSError:  # the client stopped reading: as expected
                pass
        elif self.path == "/tools":
            self.send_json(
                200,
                {
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_hook_1",
                            "type": "function",
                            "function": {"name": "lookup_order", "arguments": '{"order_id": "A-17"}'},
                        }
                    ],
                },
            )
        else:
            self.send_json(
                200, {"content": f"hook says: {said}", "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
            )
