"""The benchmark's load generator: asyncio and aiohttp, closed loop (each of CONCURRENCY clients
sends its next request when its last one ended), bounded by a count of requests and a time limit.
Loopback only: a URL whose host is not a loopback address is refused.

It reports latency percentiles, throughput, errors, time to first content chunk (streaming), and
the CPU seconds that the measured server's processes (each given pid and all its descendants) spent
while the load ran, from utime + stime (and the children's cutime + cstime) of /proc/<pid>/stat.

As a program it reads one load's settings as JSON (argument or stdin) and prints its figures as
JSON; bench/run.py runs it once per load, so that its own CPU is not the orchestrator's:

    python bench/load.py '{"url": "http://127.0.0.1:8400/v1/chat/completions", "model": "fake",
                           "concurrency": 16, "requests": 200, "stream": true}'
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CONTENT_RE = re.compile(rb'"content"\s*:\s*"[^"]')


@dataclass
class Load:
    url: str
    model: str
    key: str = ""
    stream: bool = False
    concurrency: int = 1
    requests: int = 100
    max_seconds: float = 60.0
    warmup: int = 0
    # Parley's session: each client continues one session for this many turns, then starts another.
    session_prefix: str = ""
    turns_per_session: int = 10
    # Or every request on this one session (the session-length loads).
    session_id: str = ""
    # Roots of the measured server's process trees, by role: {"web": [pid], "worker": [pid]}.
    pids: dict[str, list[int]] = field(default_factory=dict)
    # Processes whose CPU is reported beside the server's, not in it (the fake upstream, Redis,
    # the server's PostgreSQL backends).
    context_pids: dict[str, list[int]] = field(default_factory=dict)
    request_timeout: float = 120.0
    # The open-streams load: keep every stream open for this long once all have their headers,
    # sample the servers' memory then, and close them.
    hold_seconds: float = 0.0


def loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing to send load to {host!r}: loopback addresses only")


# --- /proc ---------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def process_tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants that are alive now."""
    children = _children()
    found: list[int] = []
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid in found or not os.path.exists(f"/proc/{pid}"):
            continue
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of one process, in seconds (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2 :].split()
    # After the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE_BYTES
    except OSError:
        return 0


def cpu_by_role(pids: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {role: {pid: cpu_seconds(pid) for pid in process_tree(roots)} for role, roots in pids.items()}


def cpu_spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    spent: dict[str, float] = {}
    for role, now in after.items():
        earlier = before.get(role, {})
        pids = set(now) | set(earlier)
        spent[role] = round(sum(now.get(pid, 0.0) - earlier.get(pid, 0.0) for pid in pids), 3)
    return spent


def rss_by_role(pids: dict[str, list[int]]) -> dict[str, int]:
    return {role: sum(rss_bytes(pid) for pid in process_tree(roots)) for role, roots in pids.items()}


# --- requests ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    seconds: float
    first_chunk: float | None = None
    chunks: int = 0
    error: str = ""


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class Generator:
    def __init__(self, load: Load) -> None:
        self.load = load
        self.headers = {"Content-Type": "application/json"}
        if load.key:
            self.headers["Authorization"] = f"Bearer {load.key}"
        self.started = 0
        self.open_streams = 0
        self.run_id = f"{os.getpid()}-{int(time.time() * 1000)}"

    def body(self, client: int, number: int) -> bytes:
        payload: dict[str, Any] = {
            "model": self.load.model,
            "messages": [{"role": "user", "content": f"hello {number}"}],
            "stream": self.load.stream,
        }
        if self.load.stream:
            payload["stream_options"] = {"include_usage": True}
        if self.load.session_id:
            payload["session_id"] = self.load.session_id
        elif self.load.session_prefix:
            session = number // max(1, self.load.turns_per_session)
            payload["session_id"] = f"{self.load.session_prefix}-{self.run_id}-{client}-{session}"
        return json.dumps(payload).encode()

    async def one(
        self, http: aiohttp.ClientSession, client: int, number: int, hold: asyncio.Event | None
    ) -> Outcome:
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self.load.request_timeout)
        try:
            async with http.post(
                self.load.url, data=self.body(client, number), headers=self.headers, timeout=timeout
            ) as response:
                if response.status != 200:
                    text = (await response.text())[:200]
                    return Outcome(False, time.perf_counter() - started, error=f"{response.status} {text}")
                if not self.load.stream:
                    payload = await response.read()
                    if b'"choices"' not in payload:
                        return Outcome(False, time.perf_counter() - started, error="no choices")
                    return Outcome(True, time.perf_counter() - started)
                return await self._read_stream(response, started, hold)
        except (aiohttp.ClientError, TimeoutError) as error:
            return Outcome(False, time.perf_counter() - started, error=type(error).__name__)

    async def _read_stream(
        self, response: aiohttp.ClientResponse, started: float, hold: asyncio.Event | None
    ) -> Outcome:
        first: float | None = None
        chunks = 0
        done = False
        failed = ""
        self.open_streams += 1
        try:
            if hold is not None:
                # The open-streams load: read until the hold ends, then close.
                reader = asyncio.ensure_future(self._drain(response))
                waiter = asyncio.ensure_future(hold.wait())
                finished, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if reader in finished:
                    chunks, first, done, failed = reader.result()
                    waiter.cancel()
                    if not failed and not done:
                        failed = "stream ended without [DONE]"
                    return Outcome(not failed, time.perf_counter() - started, first, chunks, failed)
                reader.cancel()
                return Outcome(True, time.perf_counter() - started)
            chunks, first, done, failed = await self._drain(response, started)
        finally:
            self.open_streams -= 1
        if not failed and not done:
            failed = "stream ended without [DONE]"
        return Outcome(not failed, time.perf_counter() - started, first, chunks, failed)

    async def _drain(
        self, response: aiohttp.ClientResponse, started: float = 0.0
    ) -> tuple[int, float | None, bool, str]:
        first: float | None = None
        chunks = 0
        async for line in response.content:
            if not line.startswith(b"data:"):
                continue
            if line.startswith(b"data: [DONE]"):
                return chunks, first, True, ""
            if b'"error"' in line[:40]:
                return chunks, first, False, "error event: " + line[:160].decode(errors="replace")
            if CONTENT_RE.search(line):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
        return chunks, first, False, ""

    async def client(
        self, http: aiohttp.ClientSession, client: int, count: int, deadline: float, outcomes: list[Outcome]
    ) -> None:
        number = 0
        while self.started < count and time.perf_counter() < deadline:
            self.started += 1
            outcomes.append(await self.one(http, client, number, None))
            number += 1

    async def run(self) -> dict[str, Any]:
        load = self.load
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as http:
            if load.warmup:
                warm: list[Outcome] = []
                deadline = time.perf_counter() + load.max_seconds
                self.started = 0
                await asyncio.gather(
                    *(
                        self.client(http, -1 - index, load.warmup, deadline, warm)
                        for index in range(load.concurrency)
                    )
                )
            if load.hold_seconds:
                return await self._open_streams(http)
            outcomes: list[Outcome] = []
            self.started = 0
            self.run_id += "m"
            cpu_before = cpu_by_role(load.pids)
            context_before = cpu_by_role(load.context_pids)
            own_before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()
            deadline = started + load.max_seconds
            await asyncio.gather(
                *(
                    self.client(http, index, load.requests, deadline, outcomes)
                    for index in range(load.concurrency)
                )
            )
            elapsed = time.perf_counter() - started
            cpu = cpu_spent(cpu_before, cpu_by_role(load.pids))
            context = cpu_spent(context_before, cpu_by_role(load.context_pids))
            own_after = resource.getrusage(resource.RUSAGE_SELF)
        own_cpu = own_after.ru_utime + own_after.ru_stime - own_before.ru_utime - own_before.ru_stime
        figures = self._figures(outcomes, elapsed, cpu, own_cpu)
        figures["context_cpu_seconds"] = context
        return figures

    def _figures(
        self, outcomes: list[Outcome], elapsed: float, cpu: dict[str, float], own_cpu: float
    ) -> dict[str, Any]:
        good = [outcome for outcome in outcomes if outcome.ok]
        latencies = [outcome.seconds * 1000 for outcome in good]
        firsts = [outcome.first_chunk * 1000 for outcome in good if outcome.first_chunk is not None]
        errors: dict[str, int] = {}
        for outcome in outcomes:
            if not outcome.ok:
                errors[outcome.error] = errors.get(outcome.error, 0) + 1
        chunks = sum(outcome.chunks for outcome in good)
        server_cpu = sum(cpu.values())
        return {
            "requests": len(outcomes),
            "ok": len(good),
            "errors": sum(errors.values()),
            "error_kinds": dict(sorted(errors.items(), key=lambda item: -item[1])[:5]),
            "seconds": round(elapsed, 3),
            "throughput": round(len(good) / elapsed, 2) if elapsed else None,
            "p50_ms": _round(percentile(latencies, 0.50)),
            "p95_ms": _round(percentile(latencies, 0.95)),
            "p99_ms": _round(percentile(latencies, 0.99)),
            "ttfc_p50_ms": _round(percentile(firsts, 0.50)),
            "ttfc_p95_ms": _round(percentile(firsts, 0.95)),
            "chunks": chunks,
            "cpu_seconds": cpu,
            "cpu_ms_per_request": round(server_cpu * 1000 / len(good), 3) if good else None,
            "cpu_ms_per_chunk": round(server_cpu * 1000 / chunks, 4) if chunks else None,
            "load_generator_cpu_seconds": round(own_cpu, 3),
        }

    async def _open_streams(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """`requests` streams at once; once all are open (headers received) or the time limit
        passes, hold them for hold_seconds, sample the servers' memory, then close them all."""
        load = self.load
        rss_before = rss_by_role(load.pids)
        hold = asyncio.Event()
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self.one(http, index, 0, hold)) for index in range(load.requests)]
        deadline = started + load.max_seconds
        while self.open_streams < load.requests and time.perf_counter() < deadline:
            if all(task.done() for task in tasks):
                break
            await asyncio.sleep(0.1)
        all_open = time.perf_counter() - started
        await asyncio.sleep(load.hold_seconds)
        open_now = self.open_streams
        rss_open = rss_by_role(load.pids)
        hold.set()
        # Streams still waiting for their headers are not waited for long: they count apart.
        _, waiting = await asyncio.wait(tasks, timeout=10)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        errors: dict[str, int] = {}
        for task in tasks:
            if task in waiting or task.cancelled():
                continue
            outcome = task.result()
            if not outcome.ok:
                errors[outcome.error[:120]] = errors.get(outcome.error[:120], 0) + 1
        grown = {role: rss_open[role] - rss_before.get(role, 0) for role in rss_open}
        return {
            "streams": load.requests,
            "open_at_sample": open_now,
            "not_open_by_the_end": len(waiting),
            "seconds_until_all_open": round(all_open, 2),
            "errors": sum(errors.values()),
            "error_kinds": dict(sorted(errors.items(), key=lambda item: -item[1])[:5]),
            "rss_before_bytes": rss_before,
            "rss_open_bytes": rss_open,
            "bytes_per_open_stream": {
                role: round(growth / open_now) if open_now else None for role, growth in grown.items()
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(load: Load) -> dict[str, Any]:
    loopback_only(load.url)
    return asyncio.run(Generator(load).run())


def main() -> None:
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    settings = json.loads(raw)
    load = Load(**settings)
    result = run(load)
    result["load"] = {key: value for key, value in asdict(load).items() if key != "key"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
