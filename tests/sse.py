"""A raw Server-Sent Events reader for the tests: it checks the wire format line by line."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SseEvent:
    id: str | None
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseRead:
    events: list[SseEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def chunks(self) -> list[dict]:
        return [event.json for event in self.events if event.data != "[DONE]" and "error" not in event.json]

    @property
    def done_count(self) -> int:
        return sum(event.data == "[DONE]" for event in self.events)

    @property
    def errors(self) -> list[dict]:
        return [event.json for event in self.events if event.data != "[DONE]" and "error" in event.json]

    def content(self, index: int = 0) -> str:
        return "".join(
            choice["delta"].get("content") or ""
            for chunk in self.chunks
            for choice in chunk["choices"]
            if choice["index"] == index
        )


def parse_sse_lines(lines, *, stop_after: int | None = None) -> SseRead:
    """Parse `lines` (an iterator of text lines without newlines) into events and comments."""
    read = SseRead()
    event_id, data = None, []
    for line in lines:
        if line.startswith(":"):
            read.comments.append(line[1:].strip())
        elif line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "":
            if data:
                read.events.append(SseEvent(event_id, "\n".join(data)))
                if stop_after is not None and len(read.events) >= stop_after:
                    return read
            event_id, data = None, []
        else:
            raise AssertionError(f"not an SSE line: {line!r}")
    return read


def post_stream(
    url: str, key: str, body: dict, *, headers: dict | None = None, stop_after: int | None = None
):
    """POST and read the whole event stream (or its first `stop_after` events)."""
    with httpx.stream(
        "POST", url, json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=60
    ) as response:
        if not response.headers["content-type"].startswith("text/event-stream"):
            response.read()
            return response, None
        return response, parse_sse_lines(response.iter_lines(), stop_after=stop_after)


def get_stream(url: str, key: str, *, last_event_id: str | None = None):
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        if response.status_code != 200:
            response.read()
            return response, None
        return response, parse_sse_lines(response.iter_lines())


def raw_stream(
    method: str, url: str, key: str, *, body: dict | None = None, last_event_id: str | None = None
) -> tuple[httpx.Response, bytes]:
    """The whole answer as the bytes on the wire, keep-alive comments left out (they come with
    silences, not with the events)."""
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    with httpx.stream(method, url, json=body, headers=headers, timeout=60) as response:
        raw = b"".join(response.iter_bytes())
    return response, raw.replace(b": keep-alive\n\n", b"")


class SseListener(threading.Thread):
    """GET an event stream on a thread of its own, so that a test can act while it listens:
    `lines` grows as they arrive, `read` and `status` are set once the stream has ended."""

    def __init__(self, url: str, key: str, *, last_event_id: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.last_event_id = url, key, last_event_id
        self.lines: list[str] = []
        self.status: int | None = None
        self.read: SseRead | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        with httpx.stream("GET", self.url, headers=headers, timeout=60) as response:
            self.status = response.status_code
            self.read = parse_sse_lines(self._tap(response.iter_lines()))

    def _tap(self, lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            self.lines.append(line)
            yield line

    def events_seen(self) -> int:
        return sum(line.startswith("data: ") for line in self.lines)

    def wait_for_events(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.events_seen() < count:
            if time.monotonic() > deadline or not self.is_alive():
                raise AssertionError(f"{self.events_seen()} events, not {count}, came: {self.lines}")
            time.sleep(0.05)
