"""Clients that do not keep up with their stream, and a channel layer that loses every message
(production mode, a stack of the test's own).

- A client that reads slowly and one that stopped reading: the web process's memory stays bounded
  (its RSS, from /proc), other clients' streams are not slowed, and the turns are stored whole.
- A web process whose channel layer never delivers a message (it listens under another channel
  prefix than the worker publishes to): its stream still brings every event, each within the
  keep-alive interval of a listener that the layer wakes, read from the event store."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.faults.stack import (
    KEEPALIVE_SECONDS,
    FaultStack,
    echo_answer,
    first_turn,
    transcript,
    user,
    wait_until_final,
)
from tests.faults.streams import TimedStream, ids_and_data
from tests.live import start_web, stop
from tests.sse import post_stream

pytestmark = [pytest.mark.faults, pytest.mark.production_only]

# A long answer: 8 choices of 2,000 words, about 16,000 events and 5 MB of stream.
BIG_TEXT = " ".join(f"w{n:04d}" for n in range(2000))
BIG_CHOICES = 8
# The web process may grow by this much while two such streams lag behind: a few pages of events
# each (it would hold them whole, several times over as Python objects, if it buffered them).
MEMORY_BOUND_MB = 10
# Reading speed of the slow client.
SLOW_READ_BYTES_PER_SECOND = 64 * 1024
# How much slower a short stream may be while the laggards hang on (a loaded test machine).
SLOWDOWN_ALLOWED_SECONDS = 1.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class RawStreamClient:
    """A streaming chat request on a plain socket with a small receive buffer, so that what the
    client does not read stays with the server (the kernel holds little for it)."""

    def __init__(self, base_url: str, key: str, body: dict) -> None:
        parts = urlsplit(base_url)
        payload = json.dumps(body).encode()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.settimeout(30)
        self.sock.connect((parts.hostname, parts.port))
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + payload)
        self.received = b""
        while b"\r\n\r\n" not in self.received:
            self.received += self.sock.recv(4096)
        self.status_line = self.received.split(b"\r\n", 1)[0].decode()
        self.bytes_read = len(self.received)

    def read(self, size: int) -> None:
        self.bytes_read += len(self.sock.recv(size))

    def close(self) -> None:
        self.sock.close()


class SlowReader(threading.Thread):
    def __init__(self, client: RawStreamClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.halt = threading.Event()

    def run(self) -> None:
        chunk = 4096
        while not self.halt.is_set():
            self.client.read(chunk)
            time.sleep(chunk / SLOW_READ_BYTES_PER_SECOND)


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append(rss_mb(self.pid))
            time.sleep(0.1)


def short_stream_seconds(stack: FaultStack, session: str) -> float:
    started = time.monotonic()
    response, read = post_stream(
        f"{stack.api_url}/chat/completions",
        stack.tenant.key,
        {"model": "echo", "messages": [user("ping")], "stream": True, "session_id": session},
    )
    assert response.status_code == 200
    assert (read.content(), read.done_count) == (echo_answer("ping"), 1)
    return time.monotonic() - started


def test_a_slow_reader_and_a_stopped_one_hold_bounded_memory_and_slow_no_other_stream(fault_stack):
    stack = fault_stack
    web_pid = stack.web.pid
    big = {"model": "echo", "messages": [user(BIG_TEXT)], "n": BIG_CHOICES, "stream": True}
    # given a web process warmed up by a long answer read at full speed, and the time a short
    # stream takes
    response, warm_up = post_stream(
        f"{stack.api_url}/chat/completions", stack.tenant.key, {**big, "n": 2, "session_id": "warm-up"}
    )
    assert (response.status_code, warm_up.done_count) == (200, 1)
    baseline = min(short_stream_seconds(stack, f"baseline-{n}") for n in range(3))
    rss_before = rss_mb(web_pid)
    sampler = RssSampler(web_pid)
    sampler.start()
    # when a client asks for a long answer and stops reading after its first kilobyte
    stopped = RawStreamClient(stack.url, stack.tenant.key, {**big, "session_id": "stopped-reader"})
    stopped.read(1024)
    # and another reads its long answer slowly
    slow = RawStreamClient(stack.url, stack.tenant.key, {**big, "session_id": "slow-reader"})
    slow_reader = SlowReader(slow)
    slow_reader.start()
    assert stopped.status_line == slow.status_line == "HTTP/1.1 200 OK"
    # then their turns run to the end and are stored whole, while the clients lag behind
    turns = [first_turn("stopped-reader").id, first_turn("slow-reader").id]
    final = wait_until_final(turns, timeout=180)
    assert {turn.status for turn in final.values()} == {"completed"}
    # and short streams meanwhile take no longer than before
    during = [short_stream_seconds(stack, f"during-{n}") for n in range(3)]
    time.sleep(2)  # the laggards hang on a little longer
    sampler.halt.set()
    slow_reader.halt.set()
    slow_reader.join(timeout=10)
    sampler.join(timeout=10)
    growth = max(sampler.samples) - rss_before
    slow_read, stopped_read = slow.bytes_read, stopped.bytes_read
    slow.close()
    stopped.close()
    answer = echo_answer(BIG_TEXT)
    for session in ("stopped-reader", "slow-reader"):
        assert transcript(session) == [("user", BIG_TEXT), ("assistant", answer)]
    stream_bytes = stored_stream_bytes(stack, turns[0])
    print(
        f"\ntwo lagging clients of {stream_bytes / 2**20:.1f} MB streams (one stopped after "
        f"{stopped_read} bytes, one read {slow_read / 2**20:.1f} MB at 64 KB/s): web RSS "
        f"{rss_before:.0f} MB before, at most +{growth:.1f} MB (bound {MEMORY_BOUND_MB} MB); a short "
        f"stream took {baseline:.2f} s before, {min(during):.2f}-{max(during):.2f} s meanwhile"
    )
    assert growth <= MEMORY_BOUND_MB
    assert max(during) <= baseline + SLOWDOWN_ALLOWED_SECONDS


def stored_stream_bytes(stack: FaultStack, turn_id: str) -> int:
    with httpx.stream(
        "GET",
        f"{stack.api_url}/turns/{turn_id}/events",
        headers={"Authorization": f"Bearer {stack.tenant.key}"},
        timeout=120,
    ) as response:
        return sum(len(chunk) for chunk in response.iter_bytes())


def test_a_channel_layer_that_drops_every_message_still_delivers_every_event_in_time(fault_stack):
    stack = fault_stack
    # given a web process that never hears from the layer: it listens under another prefix
    log_dir = Path(tempfile.mkdtemp(prefix="parley-deaf-"))
    deaf_env = {
        **stack.env,
        "PARLEY_CHANNEL_PREFIX": f"{stack.env['PARLEY_CHANNEL_PREFIX']}-deaf",
        "PARLEY_LIMITS_PREFIX": stack.env["PARLEY_CHANNEL_PREFIX"],
    }
    deaf_url, deaf_web, _ = start_web(deaf_env, log_dir, name="deaf-web")
    try:
        text = "drop " + " ".join(f"w{n}" for n in range(12))
        body = {"model": "slower", "messages": [user(text)], "stream": True, "session_id": "deaf"}
        # when a client streams a turn through it, and another follows the turn where the layer works
        deaf = TimedStream(f"{deaf_url}/v1/chat/completions", stack.tenant.key, body)
        deaf.start()
        turn = first_turn("deaf")
        woken = TimedStream(f"{stack.api_url}/turns/{turn.id}/events", stack.tenant.key)
        woken.start()
        deaf.join(timeout=60)
        woken.join(timeout=60)
    finally:
        stop([deaf_web])
    # then it got every event, once, in order: the same as the other
    assert deaf.status == 200
    assert (deaf.read.content(), deaf.read.done_count, deaf.read.errors) == (echo_answer(text), 1, [])
    assert ids_and_data(deaf.read.events) == ids_and_data(woken.read.events)
    # each at most a keep-alive interval after the other got it, and never a longer silence
    deaf_times, woken_times = arrival_times(deaf), arrival_times(woken)
    delays = [deaf_times[event_id] - woken_times[event_id] for event_id in woken_times]
    silence = deaf.longest_silence()
    print(
        f"\na layer that drops every message: {len(delays)} events all delivered, each "
        f"{max(0.0, min(delays)):.2f}-{max(delays):.2f} s after a listener woken by the layer "
        f"(mean {sum(delays) / len(delays):.2f} s, bound {KEEPALIVE_SECONDS} s); "
        f"longest silence {silence:.1f} s"
    )
    assert max(delays) <= KEEPALIVE_SECONDS
    assert silence <= KEEPALIVE_SECONDS + 1
    assert wait_until_final([turn.id], timeout=10)[turn.id].status == "completed"


def arrival_times(stream: TimedStream) -> dict[str, float]:
    """When each event's id line came."""
    return {line[4:]: at for at, line in stream.lines if line.startswith("id: ")}
