"""A production stack of the fault tests' own: PostgreSQL and Redis servers that the tests may
stop and restart (tests/faults/servers.py), a database migrated on the first, and Parley's web,
worker and beat processes against them. Nothing else runs against this database, so whatever
recovers a turn here is this stack's own recovery.

The pytest process reads that database through the Django alias FAULTS_DB (tests/faults/conftest.py);
it makes its tenant with `manage.py createapikey` and its agents through the Agents API, as an
operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from django.db import connections

from accounts.models import User
from sessions.models import Message, Session, Turn, TurnEventBatch
from tests.conftest import live_password_hash
from tests.faults.servers import PostgresServer, RedisServer
from tests.live import ROOT, Stack, api, stack_env, start_beat, start_web, start_worker, stop
from tests.test_recovery import children_of

FAULTS_DB = "faults"
# How many trials of each kill the fault tests make: 2 in the suite, 20 for the long run
# (`make test-faults`).
TRIALS = int(os.environ.get("PARLEY_FAULT_TRIALS", "2"))
# Short, so that a trial takes seconds: a lost turn's lease runs out within LEASE_SECONDS of its
# last renewal, and recovery looks every RECOVERY_SECONDS.
LEASE_SECONDS = 4
RECOVERY_SECONDS = 1
REQUEUE_SECONDS = 3
MAX_ATTEMPTS = 3
KEEPALIVE_SECONDS = 2
# A client waits this long for a non-streaming answer: long enough for a turn run again by recovery.
TURN_WAIT_SECONDS = 60
# Pool processes of the stack's worker: four turns answered at once.
WORKER_CONCURRENCY = 4
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


@dataclass
class FaultTenant:
    slug: str
    key: str


@dataclass
class Backing:
    """The fault tests' own PostgreSQL (migrated) and Redis, and the tenant made in it."""

    postgres: PostgresServer
    redis: RedisServer
    tenant: FaultTenant | None = None


def backing_start() -> Backing:
    """Started, migrated and with its tenant; when any step fails, what was started is stopped
    (a failed set-up must leave no server running)."""
    postgres, redis = PostgresServer(), RedisServer()
    backing = Backing(postgres=postgres, redis=redis)
    try:
        postgres.init()
        postgres.start()
        redis.start()
        env = fault_env(backing, run_id="setup", log_dir=Path(tempfile.gettempdir()))
        manage(env, "migrate", "--noinput")
        slug = "faults"
        key = manage(env, "createapikey", slug, "--name", "faults").strip()
        backing.tenant = FaultTenant(slug=slug, key=key)
    except BaseException:
        backing_close(backing)
        raise
    return backing


def backing_close(backing: Backing) -> None:
    backing.redis.close()
    backing.postgres.close()


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def fault_env(backing: Backing, *, run_id: str, log_dir: Path, **extra: str) -> dict[str, str]:
    prefix = f"parley-faults-{run_id}"
    return stack_env(
        "production",
        backing.postgres.url,
        run_id,
        log_dir,
        {
            "REDIS_URL": backing.redis.url,
            "PARLEY_CELERY_QUEUE": prefix,
            "PARLEY_CHANNEL_PREFIX": prefix,
            "PARLEY_TURN_LEASE_SECONDS": str(LEASE_SECONDS),
            "PARLEY_RECOVERY_SECONDS": str(RECOVERY_SECONDS),
            "PARLEY_TURN_REQUEUE_SECONDS": str(REQUEUE_SECONDS),
            "PARLEY_TURN_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "PARLEY_SSE_KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS),
            "PARLEY_TURN_WAIT_SECONDS": str(TURN_WAIT_SECONDS),
            "PARLEY_STREAM_IDLE_SECONDS": "60",
            **extra,
        },
    )


@dataclass
class FaultStack(Stack):
    """Web, worker and beat processes against the backing; the worker can be killed and replaced."""

    backing: Backing | None = None
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="parley-faults-")))
    worker: subprocess.Popen | None = None
    web: subprocess.Popen | None = None
    workers_started: int = 0

    @property
    def tenant(self) -> FaultTenant:
        assert self.backing is not None and self.backing.tenant is not None
        return self.backing.tenant

    def start_worker(self, concurrency: int) -> float:
        """A new worker; how long it took to be ready."""
        started = time.monotonic()
        self.workers_started += 1
        self.worker, log = start_worker(
            self.env, self.log_dir, name=f"worker{self.workers_started}", concurrency=concurrency
        )
        self.processes.append(self.worker)
        self.logs.append(log)
        return time.monotonic() - started

    def kill_worker_children(self) -> list[int]:
        """SIGKILL the worker's pool processes (the worker starts others); their pids."""
        assert self.worker is not None
        children = children_of(self.worker.pid)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        return children

    def kill_worker(self) -> None:
        """SIGKILL the whole worker: its main process and its pool processes."""
        assert self.worker is not None
        children = children_of(self.worker.pid)
        for pid in [self.worker.pid, *children]:
            os.kill(pid, signal.SIGKILL)
        self.worker.wait(timeout=15)
        self.processes.remove(self.worker)
        self.worker = None

    def web_log(self) -> str:
        return (self.log_dir / "web.log").read_text(errors="replace")


def fault_stack_start(backing: Backing, *, concurrency: int) -> FaultStack:
    log_dir = Path(tempfile.mkdtemp(prefix="parley-faults-"))
    env = fault_env(backing, run_id=str(os.getpid()), log_dir=log_dir)
    stack = FaultStack(mode="production", url="", env=env, backing=backing, log_dir=log_dir)
    try:
        stack.start_worker(concurrency)
        beat, beat_log = start_beat(env, log_dir)
        stack.processes.append(beat)
        stack.logs.append(beat_log)
        stack.url, stack.web, web_log = start_web(env, log_dir)
        stack.processes.append(stack.web)
        stack.logs.append(web_log)
    except BaseException:
        stop(stack.processes)
        raise
    return stack


def fault_stack_stop(stack: FaultStack) -> None:
    stop(stack.processes)


def create_echo_agent(stack: FaultStack, slug: str, **config: Any) -> None:
    """An echo agent with the given timing (chunk_delay_seconds, ...), made through the Agents API."""
    response = api(
        stack,
        stack.tenant,
        "POST",
        "/agents",
        json={"slug": slug, "backend": "echo", "backend_config": config},
    )
    assert response.status_code == 201, response.text


# --- Reading the faults' database --------------------------------------------------------------


def _read(query):
    """Evaluate a query on the faults' database, and hand its connection back: the server may be
    restarted under it."""
    try:
        return query()
    finally:
        connections[FAULTS_DB].close()


def session_turns(session_id: str) -> list[Turn]:
    return _read(
        lambda: list(
            Turn.objects.using(FAULTS_DB).filter(session__external_id=session_id).order_by("position")
        )
    )


def transcript(session_id: str) -> list[tuple[str, Any]]:
    return _read(
        lambda: list(
            Message.objects.using(FAULTS_DB)
            .filter(session__external_id=session_id)
            .order_by("seq")
            .values_list("role", "content")
        )
    )


def message_seqs(session_id: str) -> list[int]:
    return _read(
        lambda: list(
            Message.objects.using(FAULTS_DB)
            .filter(session__external_id=session_id)
            .order_by("seq")
            .values_list("seq", flat=True)
        )
    )


def session_exists(session_id: str) -> bool:
    return _read(lambda: Session.objects.using(FAULTS_DB).filter(external_id=session_id).exists())


def first_turn(session_id: str, *, timeout: float = 30) -> Turn:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        turns = session_turns(session_id)
        if turns:
            return turns[0]
        time.sleep(0.05)
    raise AssertionError(f"no turn in session {session_id} after {timeout} s")


def wait_until_final(turn_ids: Iterable[str], *, timeout: float) -> dict[str, Turn]:
    deadline = time.monotonic() + timeout
    pending = set(turn_ids)
    final: dict[str, Turn] = {}
    while pending:
        for turn in _read(lambda: list(Turn.objects.using(FAULTS_DB).filter(pk__in=pending))):
            if turn.status in FINAL_STATUSES and turn.finished_at is not None:
                final[turn.id] = turn
                pending.discard(turn.id)
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"turns not final after {timeout} s: {sorted(pending)}")
        time.sleep(0.1)
    return final


def unfinished_turns() -> list[tuple[str, str]]:
    return _read(
        lambda: list(
            Turn.objects.using(FAULTS_DB).filter(finished_at__isnull=True).values_list("pk", "status")
        )
    )


class BackgroundRequest(threading.Thread):
    """One API request on a thread of its own: its answer, and how long it took."""

    def __init__(
        self, method: str, url: str, key: str | None, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(daemon=True)
        self.method, self.url, self.kwargs = method, url, kwargs
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.headers.update(headers or {})
        self.response: httpx.Response | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        self.response = httpx.request(self.method, self.url, headers=self.headers, timeout=90, **self.kwargs)
        self.seconds = time.monotonic() - started


def signed_in_person(stack: Stack) -> dict[str, str]:
    """A user made in the faults' database, signed in: the token pair it got."""
    password = f"pw-{uuid.uuid4().hex}"
    username = f"person-{uuid.uuid4().hex[:10]}"
    _read(
        lambda: User.objects.using(FAULTS_DB).create(username=username, password=live_password_hash(password))
    )
    response = httpx.post(
        f"{stack.api_url}/auth/token", json={"username": username, "password": password}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def chat(stack: Stack, tenant: FaultTenant, body: dict[str, Any], timeout: float = 90) -> httpx.Response:
    return httpx.post(
        f"{stack.api_url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {tenant.key}"},
        timeout=timeout,
    )


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def echo_answer(text: str, earlier: list[str] | None = None, in_context: int = 1) -> str:
    """What the echo agent answers to `text` (sessions of one turn unless told otherwise)."""
    lines = [f"You said: {text}"]
    if earlier:
        lines.append("Earlier you said: " + " | ".join(f'"{said}"' for said in earlier[-5:]))
    lines.append(f"({in_context} message{'' if in_context == 1 else 's'} in context)")
    return "\n".join(lines)


def attempt_batches(turn_id: str, attempt: int) -> int:
    """How many event batches the turn's attempt `attempt` stored."""
    return _read(
        lambda: TurnEventBatch.objects.using(FAULTS_DB).filter(turn_id=turn_id, attempt=attempt).count()
    )


def wait_for_attempt_output(turn_id: str, attempt: int, *, batches: int = 2, timeout: float = 60) -> None:
    """Until the turn's attempt `attempt` is running and has stored `batches` batches of its answer."""
    deadline = time.monotonic() + timeout
    while True:
        turn = _read(lambda: Turn.objects.using(FAULTS_DB).get(pk=turn_id))
        if (
            turn.status == "running"
            and turn.attempts == attempt
            and attempt_batches(turn_id, attempt) >= batches
        ):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"turn {turn_id} is {turn.status} at attempt {turn.attempts}, not answering {attempt}"
            )
        time.sleep(0.02)
