"""Live servers for the tests: uvicorn (and, in production mode, a Celery worker and a Celery
beat) as real processes on loopback, against the test database that pytest-django created."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Long enough for 20 queued turns under CI load; short enough to test the 504 path quickly.
TURN_WAIT_SECONDS = 6
RETRY_WINDOW_SECONDS = 2
KEEPALIVE_SECONDS = 2
SIGNIN_FAILURES_PER_USERNAME = 5
SIGNIN_FAILURES_PER_ADDRESS = 12
# Short enough that the recovery tests see a lost turn run again soon, long enough that a runner
# stalled by SQLite under the stress tests keeps its lease (it renews every third of it).
LEASE_SECONDS = 15
RECOVERY_SECONDS = 2
REQUEUE_SECONDS = 5
# The deadline of one call to a webhook or an upstream: short, so that the tests of a trickling
# answer see it pass quickly; the fakes' ordinary answers take well under a second.
AGENT_CALL_SECONDS = 4


@dataclass
class Stack:
    mode: str
    url: str
    env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(settings_dict: dict) -> str:
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{settings_dict['NAME']}"


def stack_env(mode: str, db_url: str, run_id: str, log_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "PARLEY_"))}
    env.update(
        DATABASE_URL=db_url,
        PARLEY_TURN_WAIT_SECONDS=str(TURN_WAIT_SECONDS),
        PARLEY_RETRY_WINDOW_SECONDS=str(RETRY_WINDOW_SECONDS),
        PARLEY_SSE_KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS),
        PARLEY_STREAM_IDLE_SECONDS="30",
        PARLEY_TURN_LEASE_SECONDS=str(LEASE_SECONDS),
        PARLEY_RECOVERY_SECONDS=str(RECOVERY_SECONDS),
        PARLEY_TURN_REQUEUE_SECONDS=str(REQUEUE_SECONDS),
        PARLEY_WEBHOOK_TIMEOUT_SECONDS=str(AGENT_CALL_SECONDS),
        PARLEY_UPSTREAM_TIMEOUT_SECONDS=str(AGENT_CALL_SECONDS),
        # The idle-session tests run the sweep themselves (and one starts a fast sweep of its own).
        PARLEY_IDLE_SWEEP_SECONDS="3600",
        # The fake upstreams and webhooks listen on loopback: allowed explicitly, as operators would.
        PARLEY_EGRESS_ALLOW="127.0.0.1",
        # Small, so that the brute-force tests (from addresses of their own) reach them quickly.
        PARLEY_SIGNIN_FAILURES_PER_USERNAME=str(SIGNIN_FAILURES_PER_USERNAME),
        PARLEY_SIGNIN_FAILURES_PER_ADDRESS=str(SIGNIN_FAILURES_PER_ADDRESS),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    if mode == "production":
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.production",
            SECRET_KEY="test-secret-key-" + "x" * 40,
            DEBUG="false",
            # The live servers speak plain HTTP on loopback, like a service behind its TLS proxy.
            SECURE_SSL_REDIRECT="false",
            REDIS_URL=os.environ["REDIS_URL"],
            PARLEY_EXECUTOR="celery",
            PARLEY_CELERY_QUEUE=f"parley-test-{run_id}",
            PARLEY_CHANNEL_PREFIX=f"parley-test-{run_id}",
        )
    else:
        env.update(DJANGO_SETTINGS_MODULE="config.settings.embedded", PARLEY_EXECUTOR="inline")
        env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_until(check, *, timeout: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        if check():
            return
        time.sleep(0.1)
    # Not left running: the caller never got hold of it to stop it.
    process.kill()
    process.wait(timeout=15)
    raise RuntimeError(f"{what} did not become ready in {timeout} s:\n{log.read_text()[-4000:]}")


def start_web(env: dict[str, str], log_dir: Path, name: str = "web") -> tuple[str, subprocess.Popen, Path]:
    port = free_port()
    log = log_dir / f"{name}.log"
    process = spawn(
        [
            str(BIN / "uvicorn"),
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        env,
        log,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=30, what="uvicorn", process=process, log=log)
    return url, process, log


def start_worker(
    env: dict[str, str], log_dir: Path, name: str = "worker", concurrency: int = 2
) -> tuple[subprocess.Popen, Path]:
    log = log_dir / f"{name}.log"
    process = spawn(
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--hostname",
            f"{name}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--queues",
            env["PARLEY_CELERY_QUEUE"],
        ],
        env,
        log,
    )
    wait_until(
        lambda: b" ready." in log.read_bytes(), timeout=60, what="celery worker", process=process, log=log
    )
    return process, log


def start_beat(env: dict[str, str], log_dir: Path, name: str = "beat") -> tuple[subprocess.Popen, Path]:
    log = log_dir / f"{name}.log"
    process = spawn([str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO"], env, log)

    def started() -> bool:
        return b"beat: Starting" in log.read_bytes()

    wait_until(started, timeout=60, what="celery beat", process=process, log=log)
    return process, log


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_stack(
    mode: str, db_url: str, run_id: str, log_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    env = stack_env(mode, db_url, run_id, log_dir, extra_env or {})
    stack = Stack(mode=mode, url="", env=env)
    try:
        if mode == "production":
            worker, worker_log = start_worker(env, log_dir)
            stack.processes.append(worker)
            stack.logs.append(worker_log)
            beat, beat_log = start_beat(env, log_dir)
            stack.processes.append(beat)
            stack.logs.append(beat_log)
        stack.url, web, web_log = start_web(env, log_dir)
        stack.processes.append(web)
        stack.logs.append(web_log)
        yield stack
    finally:
        stop(stack.processes)


def api(
    stack: Stack, tenant: Any, method: str, path: str, headers: dict | None = None, **kwargs: Any
) -> httpx.Response:
    """A request to the live stack's /v1 API as `tenant` (its API key as Bearer)."""
    return httpx.request(
        method,
        f"{stack.api_url}{path}",
        headers={"Authorization": f"Bearer {tenant.key}", **(headers or {})},
        timeout=30,
        **kwargs,
    )


def largest_body(session_id: str, *, max_bytes: int, max_messages: int) -> bytes:
    """A streamed echo request of exactly `max_bytes` holding `max_messages` user messages, every
    message's text as long as the size leaves room for: the largest request Parley accepts."""
    messages = [{"role": "user", "content": ""} for _ in range(max_messages)]
    body = {"model": "echo", "session_id": session_id, "stream": True, "messages": messages}
    room = max_bytes - len(json.dumps(body).encode())
    each, extra = divmod(room, max_messages)
    for index, message in enumerate(messages):
        message["content"] = "x" * (each + (index < extra))
    encoded = json.dumps(body).encode()
    assert len(encoded) == max_bytes
    return encoded


def healthz_seconds(http: httpx.Client, url: str) -> float:
    """How long /healthz takes to answer, on the client's open connection."""
    started = time.monotonic()
    response = http.get(f"{url}/healthz")
    if response.status_code != 200:
        raise RuntimeError(f"/healthz answered {response.status_code}")
    return time.monotonic() - started
