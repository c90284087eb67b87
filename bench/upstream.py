"""A fake OpenAI-compatible upstream for the benchmark: plain asyncio, a minimal HTTP/1.1 server with
keep-alive, near-zero work per request. It listens on loopback only.

- GET /v1/models: one model, "fake".
- POST /v1/chat/completions: an answer of CHUNKS words ("w1 w2 ..."), after LATENCY seconds; with
  `"stream": true` as server-sent events, one word per chunk, DELAY seconds apart, a usage chunk
  (when the request asks for it with stream_options.include_usage) and `data: [DONE]`.

The defaults come from the command line; a request may override them in its model name:
"fake:chunks=8,delay=0.5,latency=0" (the benchmark's slow upstream for its open-stream load).

    python bench/upstream.py --port 8400 --chunks 16 --delay 0 --latency 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass, replace

STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
USAGE_RE = re.compile(rb'"include_usage"\s*:\s*true')
MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"]*)"')
# Requests larger than this are refused: the benchmark's are a few kilobytes, or a long session's
# history of a few megabytes.
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    chunks: int = 16
    delay: float = 0.0
    latency: float = 0.0

    def overridden_by(self, model: str) -> Answer:
        """The answer with the overrides a model name such as "fake:chunks=8,delay=0.5" carries."""
        _, _, options = model.partition(":")
        changes: dict[str, float | int] = {}
        for option in filter(None, options.split(",")):
            name, _, value = option.partition("=")
            if name == "chunks":
                changes["chunks"] = int(value)
            elif name in ("delay", "latency"):
                changes[name] = float(value)
        return replace(self, **changes) if changes else self


class Upstream(asyncio.Protocol):
    def __init__(self, defaults: Answer) -> None:
        self.defaults = defaults
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1")
        request_line, *header_lines = head.split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY_BYTES:
            self._respond(413, b'{"error":{"message":"too large"}}', close=True)
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        method, _, rest = request_line.partition(" ")
        path = rest.split(" ", 1)[0]
        self.busy = True
        asyncio.get_running_loop().create_task(self._handle(method, path, body))

    async def _handle(self, method: str, path: str, body: bytes) -> None:
        try:
            if method == "GET" and path.endswith("/models"):
                self._respond(200, MODELS)
            elif method == "POST" and path.endswith("/chat/completions"):
                await self._completion(body)
            else:
                self._respond(404, b'{"error":{"message":"not found"}}')
        finally:
            self.busy = False
            if self.transport is not None and self.buffer:
                self._next_request()

    async def _completion(self, body: bytes) -> None:
        found = MODEL_RE.search(body)
        model = found.group(1).decode() if found else "fake"
        answer = self.defaults.overridden_by(model)
        if answer.latency:
            await asyncio.sleep(answer.latency)
        created = int(time.time())
        if STREAM_RE.search(body):
            await self._stream(answer, model, created, with_usage=bool(USAGE_RE.search(body)))
            return
        text = " ".join(f"w{index}" for index in range(1, answer.chunks + 1))
        payload = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": answer.chunks,
                "total_tokens": 10 + answer.chunks,
            },
        }
        self._respond(200, json.dumps(payload).encode())

    async def _stream(self, answer: Answer, model: str, created: int, *, with_usage: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        prefix = (
            f'{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":{created},"model":"{model}",'
        )
        self._event(
            prefix + '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
        )
        for index in range(1, answer.chunks + 1):
            if answer.delay:
                await asyncio.sleep(answer.delay)
                if self.transport is None:
                    return
            word = f"w{index}" if index == 1 else f" w{index}"
            self._event(
                prefix + f'"choices":[{{"index":0,"delta":{{"content":"{word}"}},"finish_reason":null}}]}}'
            )
        self._event(prefix + '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
        if with_usage:
            total = 10 + answer.chunks
            usage = (
                f'"usage":{{"prompt_tokens":10,"completion_tokens":{answer.chunks},"total_tokens":{total}}}'
            )
            self._event(prefix + '"choices":[],' + usage + "}")
        self._event("[DONE]")
        if self.transport is not None:
            self.transport.write(b"0\r\n\r\n")

    def _event(self, data: str) -> None:
        if self.transport is None:
            return
        event = f"data: {data}\n\n".encode()
        self.transport.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")

    def _respond(self, status: int, body: bytes, *, close: bool = False) -> None:
        if self.transport is None:
            return
        reason = {200: "OK", 404: "Not Found", 413: "Payload Too Large"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n"
        )
        self.transport.write(head.encode() + body)
        if close:
            self.transport.close()


MODELS = json.dumps(
    {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "bench"}]}
).encode()


async def serve(port: int, defaults: Answer) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(defaults), "127.0.0.1", port, backlog=4096)
    print(f"fake upstream listening on http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--chunks", type=int, default=16, help="words of an answer (chunks of a stream)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between chunks of a stream")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before the answer starts")
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(arguments.port, Answer(arguments.chunks, arguments.delay, arguments.latency)))


if __name__ == "__main__":
    main()
