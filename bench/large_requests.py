"""Issue 9's target: "A tenant sending the largest accepted request, four at once, does not delay
another tenant's stream or /healthz by more than 100 ms."

One command, from the repository root, with Parley's Python:

    python bench/large_requests.py [--mode embedded|production] [--rounds 3]

It starts a stack of its own on loopback the way the tests do (tests/live.py: uvicorn, and in the
production mode a Celery worker and beat against a database made for the run on the PostgreSQL
at BENCH_POSTGRES_URL, dropped at the end, and the Redis at REDIS_URL), makes two organizations,
and in each round measures, while one organization sends four requests of the largest accepted
size (PARLEY_MAX_BODY_BYTES, PARLEY_MAX_MESSAGES_PER_REQUEST messages, streamed, the echo agent)
at once:

- /healthz: each probe's time minus the quiet median (probes 20 ms apart, one kept connection);
- the other organization's small streamed request: when its answer's headers came (the web
  process authenticated, parsed and stored it) and when its first event came (its turn started),
  minus the quiet medians;
- the same again for as long with nothing else sent (the control): on a shared machine, the
  delays other processes cause.

It prints a table and writes bench/results/large_requests.json. Bounded: each round stops
sending probes after 120 s, and the four uploads time out after 120 s."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.live import healthz_seconds, largest_body, running_stack, stack_env  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "large_requests.json"
TARGET_SECONDS = 0.100
ROUND_SECONDS = 120
QUIET_PROBES = 20
QUIET_STREAMS = 5
PROBE_PAUSE_SECONDS = 0.02
SHARED_POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# Run in the stack's environment, after the migrations: two organizations, a key each.
SEED = """
import json, uuid, django
django.setup()
from django.conf import settings
from accounts.services import api_key_create, organization_create
keys = {}
for role in ("sender", "other"):
    organization = organization_create(slug=f"bench-{role}-{uuid.uuid4().hex[:8]}")
    keys[role] = api_key_create(organization=organization, name="bench").secret
keys["max_body_bytes"] = settings.PARLEY_MAX_BODY_BYTES
keys["max_messages"] = settings.PARLEY_MAX_MESSAGES_PER_REQUEST
print(json.dumps(keys))
"""


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def stream_seconds(http: httpx.Client, url: str, key: str, text: str) -> tuple[float, float]:
    """A small streamed echo request: seconds to its headers and to its first event."""
    started = time.monotonic()
    with http.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": "echo", "messages": [user(text)], "stream": True},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        headers = time.monotonic() - started
        first = None
        for line in response.iter_lines():
            if first is None and line.startswith("data: "):
                first = time.monotonic() - started
        if response.status_code != 200 or first is None:
            raise RuntimeError(f"the other organization's stream answered {response.status_code}")
    return headers, first


def upload(url: str, key: str, body: bytes) -> float:
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=ROUND_SECONDS,
    ) as response:
        text = response.read().decode()
    if response.status_code != 200 or not text.endswith("data: [DONE]\n\n"):
        raise RuntimeError(f"a largest request answered {response.status_code}: {text[:300]}")
    return time.monotonic() - started


def one_round(url: str, seeded: dict[str, Any]) -> dict[str, Any]:
    bodies = [
        largest_body(
            f"largest-{index}-{uuid.uuid4().hex[:8]}",
            max_bytes=seeded["max_body_bytes"],
            max_messages=seeded["max_messages"],
        )
        for index in range(4)
    ]
    with httpx.Client(timeout=60) as probe, httpx.Client(timeout=60) as streamer:
        quiet_healthz = [healthz_seconds(probe, url) for _ in range(QUIET_PROBES)]
        quiet_streams = [
            stream_seconds(streamer, url, seeded["other"], f"quiet {n}") for n in range(QUIET_STREAMS)
        ]
        busy_healthz: list[float] = []
        busy_streams: list[tuple[float, float]] = []
        deadline = time.monotonic() + ROUND_SECONDS
        done = threading.Event()
        with ThreadPoolExecutor(max_workers=5) as pool:
            uploads = [pool.submit(upload, url, seeded["sender"], body) for body in bodies]

            def uploading() -> bool:
                return not done.is_set() and time.monotonic() < deadline

            def stream_while_uploading() -> None:
                n = 0
                while uploading():
                    busy_streams.append(stream_seconds(streamer, url, seeded["other"], f"busy {n}"))
                    n += 1

            streams = pool.submit(stream_while_uploading)
            while uploading():
                busy_healthz.append(healthz_seconds(probe, url))
                if all(future.done() for future in uploads):
                    done.set()
                time.sleep(PROBE_PAUSE_SECONDS)
            done.set()
            upload_seconds = [future.result() for future in uploads]
            streams.result()
        # The control: as long again, the same probes without the four requests. On a shared
        # machine the delays that other processes cause show here too.
        control_healthz, control_streams = probe_for(
            probe, streamer, url, seeded["other"], seconds=max(upload_seconds)
        )
    quiet = {
        "healthz": statistics.median(quiet_healthz),
        "stream_headers": statistics.median(headers for headers, _ in quiet_streams),
        "stream_first_event": statistics.median(first for _, first in quiet_streams),
    }

    def delays(healthz: list[float], streams: list[tuple[float, float]]) -> dict[str, list[float]]:
        return {
            "healthz": [seconds - quiet["healthz"] for seconds in healthz],
            "stream_headers": [headers - quiet["stream_headers"] for headers, _ in streams],
            "stream_first_event": [first - quiet["stream_first_event"] for _, first in streams],
        }

    return {
        "quiet_medians": quiet,
        "delays": delays(busy_healthz, busy_streams),
        "control_delays": delays(control_healthz, control_streams),
        "upload_seconds": upload_seconds,
    }


def probe_for(
    probe: httpx.Client, streamer: httpx.Client, url: str, key: str, *, seconds: float
) -> tuple[list[float], list[tuple[float, float]]]:
    """/healthz probes and the other organization's streams, for `seconds`, nothing else sent."""
    deadline = time.monotonic() + seconds
    healthz: list[float] = []
    streams: list[tuple[float, float]] = []
    with ThreadPoolExecutor(max_workers=1) as pool:

        def stream_until_deadline() -> None:
            n = 0
            while time.monotonic() < deadline:
                streams.append(stream_seconds(streamer, url, key, f"control {n}"))
                n += 1

        streaming = pool.submit(stream_until_deadline)
        while time.monotonic() < deadline:
            healthz.append(healthz_seconds(probe, url))
            time.sleep(PROBE_PAUSE_SECONDS)
        streaming.result()
    return healthz, streams


def summary(figures: list[float]) -> dict[str, float | int]:
    ordered = sorted(figures)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max": ordered[-1],
    }


@contextmanager
def database(mode: str, directory: Path) -> Any:
    """A database URL of the run's own: a SQLite file, or a PostgreSQL database dropped after."""
    if mode == "embedded":
        yield f"sqlite:///{directory / 'bench.sqlite3'}"
        return
    name = f"parley_bench_large_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SHARED_POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield SHARED_POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(SHARED_POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(mode: str, rounds: int) -> dict[str, Any]:
    if mode == "production":
        os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="parley-bench-large-")))
        db_url = stack.enter_context(database(mode, directory))
        env = stack_env(mode, db_url, run_id, directory, {})
        # Parley's own manage.py and seed code, with this Python: no outside input.
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)  # noqa: S603
        seeded = json.loads(
            subprocess.run(  # noqa: S603
                [python, "-c", SEED], cwd=ROOT, env=env, check=True, capture_output=True
            ).stdout
        )
        live = stack.enter_context(running_stack(mode, db_url, run_id, directory))
        results = [one_round(live.url, seeded) for _ in range(rounds)]
    return {"seeded": seeded, "rounds": results}


def report(mode: str, measured: dict[str, Any]) -> dict[str, Any]:
    rounds = measured["rounds"]
    names = ("healthz", "stream_headers", "stream_first_event")
    overall = {name: summary([delay for one in rounds for delay in one["delays"][name]]) for name in names}
    control = {
        name: summary([delay for one in rounds for delay in one["control_delays"][name]]) for name in names
    }
    return {
        "benchmark": "large_requests",
        "target": "four of the largest accepted requests at once delay neither /healthz nor another "
        "tenant's stream by more than 100 ms",
        "target_seconds": TARGET_SECONDS,
        "met": all(figures.get("max", 0) <= TARGET_SECONDS for figures in overall.values()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "request": {
            "bytes": measured["seeded"]["max_body_bytes"],
            "messages": measured["seeded"]["max_messages"],
            "at_once": 4,
        },
        "delay_seconds": overall,
        "control_delay_seconds": control,
        "rounds": [
            {
                "quiet_medians_seconds": one["quiet_medians"],
                "delay_seconds": {name: summary(delays) for name, delays in one["delays"].items()},
                "control_delay_seconds": {
                    name: summary(delays) for name, delays in one["control_delays"].items()
                },
                "upload_seconds": one["upload_seconds"],
            }
            for one in rounds
        ],
    }


def print_table(result: dict[str, Any]) -> None:
    request = result["request"]
    print(
        f"\nlarge_requests ({result['mode']}): {request['at_once']} requests of {request['bytes']} bytes, "
        f"{request['messages']} messages, at once; {len(result['rounds'])} rounds"
    )
    print(f"{'delay (ms) of':<46}{'count':>7}{'median':>9}{'p95':>9}{'max':>9}  target 100 ms")
    names = {
        "healthz": "/healthz",
        "stream_headers": "other tenant's stream, headers",
        "stream_first_event": "other tenant's stream, first event",
    }
    for phase, key in (("", "delay_seconds"), (" (control)", "control_delay_seconds")):
        for name, label in names.items():
            figures = result[key][name]
            label = f"{label}{phase}"
            if not figures["count"]:
                print(f"{label:<46}{0:>7}")
                continue
            met = "met" if figures["max"] <= TARGET_SECONDS else "missed"
            print(
                f"{label:<46}{figures['count']:>7}{figures['median'] * 1000:>9.0f}"
                f"{figures['p95'] * 1000:>9.0f}{figures['max'] * 1000:>9.0f}  {met if not phase else ''}"
            )
    uploads = [seconds for one in result["rounds"] for seconds in one["upload_seconds"]]
    print(f"the four requests answered in {min(uploads):.2f}-{max(uploads):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 11), metavar="1-10")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = report(args.mode, run(args.mode, args.rounds))
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
