"""Event streams read on threads of their own, each line with the time it came, so that a fault
test can tell how long a stream stayed silent, and check what it got against what is stored."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import httpx

from tests.sse import SseEvent, SseRead, get_stream, parse_sse_lines


class TimedStream(threading.Thread):
    """POST a streaming chat request (or GET an event stream, with `body` None) and keep every
    line with its arrival time."""

    def __init__(
        self, url: str, key: str, body: dict[str, Any] | None = None, *, last_event_id: str | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.body, self.last_event_id = url, key, body, last_event_id
        self.started_at = self.opened_at = 0.0
        self.lines: list[tuple[float, str]] = []
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self.read: SseRead | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        self.started_at = time.monotonic()
        try:
            with httpx.stream(
                "GET" if self.body is None else "POST",
                self.url,
                json=self.body,
                headers=headers,
                timeout=httpx.Timeout(120, connect=10),
            ) as response:
                self.opened_at = time.monotonic()
                self.status, self.headers = response.status_code, response.headers
                for line in response.iter_lines():
                    self.lines.append((time.monotonic(), line))
        except httpx.HTTPError as failure:  # the test reports it: a stream must end cleanly
            self.failure = failure
        self.read = parse_sse_lines(line for _, line in self.lines)

    def events_seen(self) -> int:
        return sum(line.startswith("data: ") for _, line in list(self.lines))

    def longest_silence(self, until: float | None = None) -> float:
        """The longest time without a line (event or keep-alive) once the stream is open (its
        status line came), to its end."""
        times = [self.opened_at, *(at for at, _ in self.lines)]
        if until is not None:
            times.append(until)
        return max((later - earlier for earlier, later in itertools.pairwise(times)), default=0.0)

    @property
    def last_event(self) -> SseEvent:
        assert self.read is not None and self.read.events, f"no event: {self.lines[-10:]}"
        return self.read.events[-1]

    @property
    def ended_cleanly(self) -> bool:
        """Ended with [DONE] or with an error event, never cut or silent."""
        if self.failure is not None or self.read is None or not self.read.events:
            return False
        last = self.last_event
        return last.data == "[DONE]" or "error" in last.json


def wait_for(streams: list[TimedStream], count: int, events: int, timeout: float = 60) -> None:
    """Until `count` of the streams have at least `events` events each."""
    deadline = time.monotonic() + timeout
    while sum(stream.events_seen() >= events for stream in streams) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{[s.events_seen() for s in streams]} events after {timeout} s")
        time.sleep(0.02)


def stored_stream(api_url: str, key: str, turn_id: str, last_event_id: str | None = None) -> SseRead:
    """The turn's stream as a replay gives it, whole, after `last_event_id`."""
    response, read = get_stream(f"{api_url}/turns/{turn_id}/events", key, last_event_id=last_event_id)
    assert response.status_code == 200, response.text
    return read


def followed_to_the_end(
    stream: TimedStream, api_url: str, key: str, turn_id: str
) -> tuple[list[SseEvent], int]:
    """What a client that got `stream` ends up with, following the turn again with Last-Event-ID
    as long as its stream ends with an error event, as an EventSource does: the events of the
    turn's answer, and how many times it followed again. A turn_restarted marker means that what
    came before it is superseded (README, Recovery): the client drops it."""
    assert stream.read is not None
    events, last, followed = [], stream.read.events, 0
    while True:
        events += [event for event in last if event.data == "[DONE]" or "error" not in event.json]
        if not last or last[-1].data == "[DONE]" or followed == 5:
            return events, followed
        if last[-1].json["error"]["code"] == "turn_restarted":
            events = []
        last = stored_stream(api_url, key, turn_id, last[-1].id).events
        followed += 1


def ids_and_data(events: list[SseEvent]) -> list[tuple[str | None, Any]]:
    """Each event's id and data, parsed: on PostgreSQL the store keeps JSON as jsonb, whose key
    order differs from that of the events the layer carried."""
    return [(event.id, event.data if event.data == "[DONE]" else event.json) for event in events]
