"""The benchmark of issue 11: Parley against a stateless gateway (LiteLLM's proxy) and against the
physical limit (the fake upstream itself), on one machine, in one run. `make bench` runs it (the
full run), `make bench-quick` a short one; bench/README.md says what it measures and how.

Run with Parley's Python (its virtualenv); the load generator, LiteLLM and the plot run with the
benchmark's own (bench/.venv). Everything listens on, and sends only to, 127.0.0.1; every load is
bounded in requests and in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import profile, report  # noqa: E402
from tests.faults.servers import PostgresServer, RedisServer  # noqa: E402
from tests.live import (  # noqa: E402
    database_url,
    free_port,
    spawn,
    stack_env,
    start_beat,
    start_web,
    start_worker,
    stop,
    wait_until,
)

BENCH_PYTHON = ROOT / "bench" / ".venv" / "bin" / "python"
LITELLM = ROOT / "bench" / ".venv" / "bin" / "litellm"
RESULTS = ROOT / "bench" / "results"
SHARED_POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BENCH_DATABASE = "parley_bench"
CONCURRENCIES = (1, 16, 64)
# The fake upstream's answer: 16 words, streamed one per chunk, no delay.
CHUNKS = 16
# The open-streams load's slow upstream: 20 chunks, 0.5 s apart (10 s an answer).
SLOW_MODEL = "fake:chunks=20,delay=0.5"
WORKER_CONCURRENCY = 4
# Settings that tests/live.py shortens for the tests: the benchmark runs Parley with the defaults of
# config/settings (as deployed), but for the egress allowance of the loopback upstream.
TEST_SHORTENED = (
    "PARLEY_TURN_WAIT_SECONDS",
    "PARLEY_RETRY_WINDOW_SECONDS",
    "PARLEY_SSE_KEEPALIVE_SECONDS",
    "PARLEY_STREAM_IDLE_SECONDS",
    "PARLEY_TURN_LEASE_SECONDS",
    "PARLEY_RECOVERY_SECONDS",
    "PARLEY_TURN_REQUEUE_SECONDS",
    "PARLEY_WEBHOOK_TIMEOUT_SECONDS",
    "PARLEY_UPSTREAM_TIMEOUT_SECONDS",
    "PARLEY_IDLE_SWEEP_SECONDS",
    "PARLEY_SIGNIN_FAILURES_PER_USERNAME",
    "PARLEY_SIGNIN_FAILURES_PER_ADDRESS",
)


@dataclass(frozen=True)
class Plan:
    """How much load: requests per load by concurrency, rounds, and the side loads."""

    name: str
    rounds: int
    requests: dict[int, int]
    max_seconds: float
    open_streams: int
    hold_seconds: float
    session_turns: int
    # How long the open-streams load may take to open them all.
    open_seconds: float = 120
    session_lengths: tuple[int, ...] = (10, 1000, 10000)


PLANS = {
    # A check that every part runs, in about two minutes; its figures mean little.
    "smoke": Plan(
        "smoke",
        rounds=1,
        requests={1: 10, 16: 32, 64: 64},
        max_seconds=20,
        open_streams=100,
        hold_seconds=1,
        session_turns=3,
    ),
    "quick": Plan(
        "quick",
        rounds=1,
        requests={1: 20, 16: 64, 64: 128},
        max_seconds=10,
        open_streams=1000,
        hold_seconds=3,
        session_turns=5,
        open_seconds=45,
    ),
    "full": Plan(
        "full",
        rounds=2,
        requests={1: 100, 16: 300, 64: 600},
        max_seconds=30,
        open_streams=1000,
        hold_seconds=5,
        session_turns=15,
    ),
}


@dataclass
class Target:
    """One measured path: where to send, as whom, and which processes are the server."""

    name: str
    url: str
    model: str
    slow_model: str
    key: str = ""
    pids: dict[str, list[int]] = field(default_factory=dict)
    context: Callable[[], dict[str, list[int]]] = dict
    sessions: bool = False
    processes: str = ""


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- servers ---------------------------------------------------------------------------------------


@contextmanager
def fake_upstream(log_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    process = spawn(
        [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port), "--chunks", str(CHUNKS)],
        dict(os.environ),
        log_dir / "upstream.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _answers(f"{url}/v1/models"),
            timeout=15,
            what="fake upstream",
            process=process,
            log=log_dir / "upstream.log",
        )
        yield url, process
    finally:
        stop([process])


def _answers(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def fresh_database(server_url: str, name: str) -> str:
    """An empty database `name` on the server (dropped first if a run left one); its URL."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def parley_env(mode: str, db_url: str, redis_url: str, log_dir: Path, run_id: str) -> dict[str, str]:
    if mode == "production":
        os.environ["REDIS_URL"] = redis_url
    env = stack_env(mode, db_url, run_id, log_dir, {})
    for name in TEST_SHORTENED:
        env.pop(name, None)
    env["LOG_LEVEL"] = "WARNING"
    return env


def parley_python(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(  # noqa: S603 (our own programs)
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if args[0].endswith("seed.py") else done.stdout


@dataclass
class ParleyStack:
    mode: str
    env: dict[str, str]
    url: str = ""
    web: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    beat: subprocess.Popen | None = None
    tenant: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def pids(self) -> dict[str, list[int]]:
        found = {"web": [self.web.pid]} if self.web else {}
        if self.worker:
            found["worker"] = [self.worker.pid]
        if self.beat:
            found["beat"] = [self.beat.pid]
        return found


@contextmanager
def parley(
    mode: str, db_url: str, redis_url: str, upstream: str, log_dir: Path, *, beat: bool = True
) -> Iterator[ParleyStack]:
    run_id = f"bench-{mode}-{uuid.uuid4().hex[:6]}"
    env = parley_env(mode, db_url, redis_url, log_dir, run_id)
    stack = ParleyStack(mode=mode, env=env)
    parley_python(env, "manage.py", "migrate", "--noinput")
    stack.tenant = parley_python(
        env, "bench/seed.py", "tenant", "--upstream", f"{upstream}/v1", "--slow-model", SLOW_MODEL
    )
    try:
        if mode == "production":
            stack.worker, _ = start_worker(
                env, log_dir, name=f"worker-{run_id}", concurrency=WORKER_CONCURRENCY
            )
            stack.processes.append(stack.worker)
            if beat:
                stack.beat, _ = start_beat(env, log_dir, name=f"beat-{run_id}")
                stack.processes.append(stack.beat)
        stack.url, stack.web, _ = start_web(env, log_dir, name=f"web-{run_id}")
        stack.processes.append(stack.web)
        yield stack
    finally:
        stop(stack.processes)


LITELLM_KEY = "sk-bench-litellm"


@contextmanager
def litellm(upstream: str, log_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    config = log_dir / "litellm.yaml"
    models = [("bench", "fake"), ("bench-slow", SLOW_MODEL)]
    lines = ["model_list:"]
    for name, model in models:
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            f'      model: "openai/{model}"',
            f"      api_base: {upstream}/v1",
            "      api_key: sk-bench-upstream",
        ]
    lines += ["general_settings:", f"  master_key: {LITELLM_KEY}", ""]
    config.write_text("\n".join(lines))
    port = free_port()
    env = dict(os.environ)
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        # Anything in it that would reach beyond loopback through a proxy-aware client fails at once.
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    log_file = log_dir / "litellm.log"
    process = subprocess.Popen(  # noqa: S603 (our own programs)
        [
            str(LITELLM),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        cwd=log_dir,
        env=env,
        stdout=log_file.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _answers(f"{url}/health/liveliness"),
            timeout=120,
            what="litellm",
            process=process,
            log=log_file,
        )
        yield url, process
    finally:
        stop([process])


def postgres_backends(server_url: str, database: str) -> list[int]:
    with psycopg.connect(server_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        ).fetchall()
    return [row[0] for row in rows]


# --- loads -----------------------------------------------------------------------------------------


def run_load(target: Target, settings: dict[str, Any]) -> dict[str, Any]:
    load = {
        "url": f"{target.url}/v1/chat/completions",
        "key": target.key,
        "model": target.model,
        "pids": target.pids,
        "context_pids": target.context(),
        **settings,
    }
    if target.sessions and not load.get("session_prefix") and not load.get("session_id"):
        load["session_prefix"] = "bench"
    budget = float(load.get("max_seconds", 60)) + float(load.get("hold_seconds", 0)) + 180
    done = subprocess.run(  # noqa: S603 (our own programs)
        [str(BENCH_PYTHON), str(ROOT / "bench" / "load.py"), json.dumps(load)],
        capture_output=True,
        text=True,
        timeout=budget,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load against {target.name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def rounds(targets: list[Target], plan: Plan) -> dict[str, Any]:
    """Each load (streaming or not, at each concurrency) on every path in turn, the order of the
    paths rotated each round, so that what the machine does meanwhile falls on all of them."""
    measured: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    for number in range(plan.rounds):
        order = targets[number % len(targets) :] + targets[: number % len(targets)]
        for stream in (False, True):
            for concurrency in CONCURRENCIES:
                for target in order:
                    settings = {
                        "stream": stream,
                        "concurrency": concurrency,
                        "requests": plan.requests[concurrency],
                        "warmup": concurrency,
                        "max_seconds": plan.max_seconds,
                    }
                    figures = run_load(target, settings)
                    figures.pop("load", None)
                    mode = "stream" if stream else "non_stream"
                    measured.setdefault(target.name, {}).setdefault(mode, {}).setdefault(str(concurrency), [])
                    measured[target.name][mode][str(concurrency)].append(figures)
                    log(
                        f"round {number + 1}/{plan.rounds} {target.name:<10} {mode:<10} c={concurrency:<3} "
                        f"p50 {figures['p50_ms']} ms, {figures['throughput']} req/s, "
                        f"errors {figures['errors']}, "
                        f"cpu {figures['cpu_ms_per_request']} ms/req"
                        + (f" {figures['error_kinds']}" if figures["errors"] else "")
                    )
    return measured


def summarize(measured: dict[str, Any]) -> dict[str, Any]:
    """Per path, mode and concurrency: the median of the rounds' percentiles and throughputs; the
    CPU of all rounds over all their requests (and chunks)."""
    summary: dict[str, Any] = {}
    for path, modes in measured.items():
        for mode, by_concurrency in modes.items():
            for concurrency, runs in by_concurrency.items():
                ok = sum(run["ok"] for run in runs)
                chunks = sum(run["chunks"] for run in runs)
                cpu: dict[str, float] = {}
                context: dict[str, float] = {}
                for run in runs:
                    for role, seconds in run["cpu_seconds"].items():
                        cpu[role] = round(cpu.get(role, 0.0) + seconds, 3)
                    for role, seconds in run.get("context_cpu_seconds", {}).items():
                        context[role] = round(context.get(role, 0.0) + seconds, 3)
                server = sum(cpu.values())
                summary.setdefault(path, {}).setdefault(mode, {})[concurrency] = {
                    "rounds": len(runs),
                    "requests": sum(run["requests"] for run in runs),
                    "ok": ok,
                    "errors": sum(run["errors"] for run in runs),
                    "error_kinds": _merged_errors(runs),
                    **{
                        name: _median([run[name] for run in runs])
                        for name in ("p50_ms", "p95_ms", "p99_ms", "ttfc_p50_ms", "ttfc_p95_ms", "throughput")
                    },
                    "cpu_seconds": cpu,
                    "context_cpu_seconds": context,
                    "cpu_ms_per_request": round(server * 1000 / ok, 3) if ok else None,
                    # Per content chunk of the upstream's (CHUNKS an answer), however many events
                    # the server made of them on the way: coalescing is allowed, and counts in its favour.
                    "cpu_ms_per_chunk": round(server * 1000 / (ok * CHUNKS), 4) if chunks else None,
                    "events_per_answer": round(chunks / ok, 2) if chunks else None,
                    "chunks": chunks,
                }
    return summary


def _median(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 2) if present else None


def _merged_errors(runs: list[dict[str, Any]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for run in runs:
        for kind, count in run.get("error_kinds", {}).items():
            merged[kind] = merged.get(kind, 0) + count
    return merged


# --- the side loads --------------------------------------------------------------------------------


def open_streams(target: Target, plan: Plan, pids: dict[str, list[int]]) -> dict[str, Any]:
    """`plan.open_streams` streams at once on the slow upstream, held open, memory sampled."""
    figures = run_load(
        Target(
            target.name,
            target.url,
            target.slow_model,
            target.slow_model,
            target.key,
            pids,
            sessions=target.sessions,
        ),
        {
            "model": target.slow_model,
            "stream": True,
            "requests": plan.open_streams,
            "hold_seconds": plan.hold_seconds,
            "max_seconds": plan.open_seconds,
            "request_timeout": 180,
        },
    )
    figures.pop("load", None)
    return figures


def session_lengths(upstream: str, redis_url: str, plan: Plan, log_dir: Path) -> dict[str, Any]:
    """Turns on sessions of 0 (a new session each turn), 10, 1,000 and 10,000 messages, one after
    the other: latency, and the queries of web and worker per turn. The queries are counted by
    PostgreSQL's pg_stat_statements, so these run on a PostgreSQL server of the benchmark's own
    (the shared one does not load the extension), as the fault suite runs one."""
    server = PostgresServer()
    server.init()
    with (server.data / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = 'all'\n")
    server.start()
    try:
        with psycopg.connect(server.url, autocommit=True) as connection:
            connection.execute("CREATE DATABASE parley_bench")
        db_url = server.url.rsplit("/", 1)[0] + "/parley_bench"
        with psycopg.connect(db_url, autocommit=True) as connection:
            connection.execute("CREATE EXTENSION pg_stat_statements")
        # No beat: its periodic work would add queries that no turn made.
        with parley("production", db_url, redis_url, upstream, log_dir, beat=False) as stack:
            long_sessions = parley_python(
                stack.env,
                "bench/seed.py",
                "sessions",
                "--organization",
                stack.tenant["organization"],
                "--messages",
                *[str(length) for length in plan.session_lengths],
            )
            target = Target(
                "parley", stack.url, "bench", "bench-slow", stack.tenant["key"], stack.pids(), sessions=True
            )
            figures: dict[str, Any] = {}
            for length in (0, *plan.session_lengths):
                if length == 0:
                    session = {"session_prefix": f"new-{uuid.uuid4().hex[:6]}", "turns_per_session": 1}
                else:
                    session = {"session_id": long_sessions[str(length)]}
                # Connections and caches warmed first, outside the count.
                run_load(target, {"requests": 2, "max_seconds": 60, **session})
                before = _statements(db_url)
                result = run_load(target, {"requests": plan.session_turns, "max_seconds": 120, **session})
                after = _statements(db_url)
                result.pop("load", None)
                result["queries_per_turn"] = round((after[0] - before[0]) / max(1, result["ok"]), 2)
                result["queries_per_turn_without_transaction_control"] = round(
                    (after[1] - before[1]) / max(1, result["ok"]), 2
                )
                figures[str(length)] = result
                log(
                    f"session of {length} messages: p50 {result['p50_ms']} ms, "
                    f"{result['queries_per_turn']} queries a turn"
                )
            return figures
    finally:
        server.close()


def _statements(database_url: str) -> tuple[int, int]:
    """Statements run so far in parley_bench: all of them, and all but BEGIN/COMMIT/ROLLBACK/SAVEPOINT."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT coalesce(sum(calls), 0), coalesce(sum(calls) FILTER (WHERE query !~* "
            "'^\\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|START TRANSACTION)'), 0) "
            "FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query NOT LIKE '%pg_stat_statements%'"
        ).fetchone()
    return int(row[0]), int(row[1])


def profile_parley(target: Target, log_dir: Path, seconds: float = 20) -> dict[str, Any]:
    """A non-streaming load at concurrency 16 on Parley (production) while py-spy samples its web
    process and its worker (main and pool processes)."""
    recorders = {}
    for role, subprocesses in (("web", False), ("worker", True)):
        output = log_dir / f"profile-{role}.txt"
        recorder = profile.record(target.pids[role][0], seconds, output, subprocesses=subprocesses)
        recorders[role] = (recorder, output)
    figures = run_load(target, {"concurrency": 16, "requests": 100_000, "max_seconds": seconds - 2})
    summary: dict[str, Any] = {}
    for role, (recorder, output) in recorders.items():
        recorder.wait(timeout=seconds + 60)
        summary[role] = profile.summarize(output)
    summary["load"] = {name: figures[name] for name in ("ok", "throughput", "p50_ms", "cpu_ms_per_request")}
    return summary


# --- the machine -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def render() -> None:
    """The targets, the table, the plot and BENCHMARKS.md from bench/results/latest.json."""
    results = json.loads((RESULTS / "latest.json").read_text())
    if results.get("rounds"):
        results["loads"] = summarize(results["rounds"])
    results["targets"] = report.targets(results)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    subprocess.run(  # noqa: S603 (our own programs)
        [
            str(BENCH_PYTHON),
            str(ROOT / "bench" / "plot.py"),
            str(RESULTS / "latest.json"),
            str(RESULTS / "latency.png"),
        ],
        check=True,
        timeout=120,
    )
    report.write_markdown(results, ROOT / "BENCHMARKS.md")


# --- main ------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plan", choices=sorted(PLANS), default="full")
    parser.add_argument("--rounds", type=int, help="override the plan's number of rounds")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["embedded", "litellm", "rounds", "profile", "sessions", "open-streams"],
    )
    parser.add_argument("--note", default="", help="a note recorded with the results (e.g. 'machine shared')")
    parser.add_argument("--render", action="store_true", help="only render latest.json again (no load)")
    arguments = parser.parse_args()
    if arguments.render:
        render()
        return
    plan = PLANS[arguments.plan]
    if arguments.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": arguments.rounds})
    if not BENCH_PYTHON.exists():
        raise SystemExit("bench/.venv is missing: run `make bench-install` (or `make bench`) first")
    log_dir = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    log(f"plan {plan.name}; logs in {log_dir}")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": plan.__dict__ | {"requests": {str(c): n for c, n in plan.requests.items()}},
        "machine": machine(),
        "note": arguments.note,
        "upstream": {"chunks": CHUNKS, "latency_seconds": 0, "delay_seconds": 0, "slow_model": SLOW_MODEL},
    }
    started = time.monotonic()
    with ExitStack() as stack:
        upstream_url, upstream = stack.enter_context(fake_upstream(log_dir))
        redis = stack.enter_context(redis_server())
        db_url = fresh_database(SHARED_POSTGRES, BENCH_DATABASE)
        log("starting Parley (production)")
        production = stack.enter_context(parley("production", db_url, redis.url, upstream_url, log_dir))
        redis_pid = redis.process.pid if redis.process else 0

        def production_context() -> dict[str, list[int]]:
            return {
                "upstream": [upstream.pid],
                "redis": [redis_pid],
                "postgres_backends": postgres_backends(SHARED_POSTGRES, BENCH_DATABASE),
            }

        targets = [
            Target(
                "direct",
                upstream_url,
                "fake",
                SLOW_MODEL,
                pids={"upstream": [upstream.pid]},
                processes="the fake upstream alone (one asyncio process)",
            ),
            Target(
                "parley",
                production.url,
                "bench",
                "bench-slow",
                production.tenant["key"],
                production.pids(),
                production_context,
                sessions=True,
                processes=(
                    f"uvicorn config.asgi:application (1 process), celery worker (--concurrency "
                    f"{WORKER_CONCURRENCY}: 1 + {WORKER_CONCURRENCY} processes), celery beat; PostgreSQL "
                    f"(shared server, database {BENCH_DATABASE}), redis-server of its own"
                ),
            ),
        ]
        if "litellm" not in arguments.skip:
            log("starting LiteLLM's proxy")
            litellm_url, litellm_process = stack.enter_context(litellm(upstream_url, log_dir))
            targets.append(
                Target(
                    "litellm",
                    litellm_url,
                    "bench",
                    "bench-slow",
                    LITELLM_KEY,
                    {"litellm": [litellm_process.pid]},
                    lambda: {"upstream": [upstream.pid]},
                    processes="litellm --num_workers 1 (one uvicorn process), no database",
                )
            )
        if "embedded" not in arguments.skip:
            log("starting Parley (embedded)")
            sqlite = log_dir / "embedded.sqlite3"
            embedded = stack.enter_context(
                parley(
                    "embedded",
                    database_url({"ENGINE": "django.db.backends.sqlite3", "NAME": str(sqlite)}),
                    "",
                    upstream_url,
                    log_dir,
                )
            )
            targets.append(
                Target(
                    "embedded",
                    embedded.url,
                    "bench",
                    "bench-slow",
                    embedded.tenant["key"],
                    embedded.pids(),
                    lambda: {"upstream": [upstream.pid]},
                    sessions=True,
                    processes="uvicorn config.asgi:application (1 process: inline executor, SQLite)",
                )
            )
        results["processes"] = {target.name: target.processes for target in targets}
        if "rounds" not in arguments.skip:
            results["rounds"] = rounds(targets, plan)
            results["loads"] = summarize(results["rounds"])
        if "profile" not in arguments.skip and profile.available():
            log("profiling Parley (py-spy) under a non-streaming load at concurrency 16")
            results["profile"] = profile_parley(targets[1], log_dir)
        if "sessions" not in arguments.skip:
            results["session_lengths"] = session_lengths(upstream_url, redis.url, plan, log_dir)
        if "open-streams" not in arguments.skip:
            # Last: the turns of the streams it closes keep the worker busy for a while.
            results["open_streams"] = {}
            for target in sorted(targets, key=lambda target: target.name == "parley"):
                if target.name in ("parley", "litellm"):
                    pids = {"web": target.pids["web"]} if target.name == "parley" else target.pids
                    log(f"{plan.open_streams} open streams on {target.name}")
                    results["open_streams"][target.name] = open_streams(target, plan, pids)
    # The servers are stopped: the benchmark's database goes too (the next run makes it anew).
    with psycopg.connect(SHARED_POSTGRES, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
    results["seconds"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    render()
    shutil.rmtree(log_dir, ignore_errors=True)
    log(
        f"done in {results['seconds']} s: bench/results/latest.json, bench/results/latency.png, BENCHMARKS.md"
    )


if __name__ == "__main__":
    main()
