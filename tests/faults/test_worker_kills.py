"""Workers killed mid-turn (production mode, a stack of the test's own whose only worker has one
pool process): SIGKILL of the pool process running a turn, and of the whole worker (then another
worker starts). Each trial: the client streams a turn, the kill comes once the turn has stored
part of its answer, and the client sends the session's next request meanwhile. Parley's own
recovery (beat) runs the turn again within the lease and half a minute; nothing is lost or stored
twice; the client that saw the lost attempt follows the turn to its one answer; the next turn
runs after it. A turn that kills its worker every time is failed at the attempt cap, and the
session goes on. PARLEY_FAULT_TRIALS sets the number of trials (2; 20 with make test-faults)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.faults.stack import (
    LEASE_SECONDS,
    MAX_ATTEMPTS,
    TRIALS,
    BackgroundRequest,
    FaultStack,
    chat,
    create_echo_agent,
    echo_answer,
    fault_stack_start,
    fault_stack_stop,
    first_turn,
    session_turns,
    transcript,
    user,
    wait_for_attempt_output,
    wait_until_final,
)
from tests.faults.streams import TimedStream, followed_to_the_end
from tests.sse import SseRead

pytestmark = [pytest.mark.faults, pytest.mark.production_only]

# Every turn is final within this after the kill: the lease runs out, then recovery hands it over.
FINAL_BOUND = LEASE_SECONDS + 30
WORDS = " ".join(f"w{n}" for n in range(8))


@pytest.fixture(scope="module")
def fault_stack(backing) -> Iterator[FaultStack]:
    stack = fault_stack_start(backing, name="kills", concurrency=1)
    # About 2 s per answer: the kill lands mid-answer.
    create_echo_agent(stack, "kill-slow", chunk_delay_seconds=0.12)
    try:
        yield stack
    finally:
        fault_stack_stop(stack)


@dataclass
class Trial:
    seconds_to_final: float
    attempts: int
    follow_ups: int


def run_trial(stack: FaultStack, session: str, kill: Callable[[], None]) -> Trial:
    tenant, chat_url = stack.tenant, f"{stack.api_url}/chat/completions"
    text = f"{session}: {WORDS}"
    answer = echo_answer(text)
    # given a client streaming a turn whose worker has stored part of the answer
    first = TimedStream(
        chat_url,
        tenant.key,
        {"model": "kill-slow", "messages": [user(text)], "stream": True, "session_id": session},
    )
    first.start()
    turn = first_turn(session)
    wait_for_attempt_output(turn.id, 1)
    # when the worker is killed
    killed_at = time.monotonic()
    kill()
    # and the client sends the session's next request meanwhile
    second = BackgroundRequest(
        "POST",
        chat_url,
        tenant.key,
        json={"model": "echo", "messages": [user("next")], "session_id": session},
    )
    second.start()
    # then the turn is answered, by another attempt, within the lease and half a minute
    final = wait_until_final([turn.id], timeout=FINAL_BOUND)[turn.id]
    seconds_to_final = time.monotonic() - killed_at
    assert (final.status, final.attempts) == ("completed", 2)
    # and the client that saw the lost attempt's start follows the turn to its one answer
    first.join(timeout=FINAL_BOUND)
    assert first.ended_cleanly, f"{first.failure!r} {first.lines[-5:]}"
    events, follow_ups = followed_to_the_end(first, stack.api_url, tenant.key, turn.id)
    got = SseRead(events=events)
    assert (got.content(), got.done_count) == (answer, 1)
    # and the session's next turn ran after it, seeing it
    second.join(timeout=FINAL_BOUND)
    next_answer = echo_answer("next", earlier=[text], in_context=3)
    assert second.response is not None and second.response.status_code == 200, second.response
    assert second.response.json()["choices"][0]["message"]["content"] == next_answer
    # and nothing was lost or stored twice
    assert transcript(session) == [
        ("user", text),
        ("assistant", answer),
        ("user", "next"),
        ("assistant", next_answer),
    ]
    return Trial(seconds_to_final=seconds_to_final, attempts=final.attempts, follow_ups=follow_ups)


def report(what: str, trials: list[Trial]) -> str:
    seconds = sorted(trial.seconds_to_final for trial in trials)
    follow_ups = sum(trial.follow_ups for trial in trials)
    return (
        f"\n{what}: {len(trials)} trials, 0 user messages lost, 0 answers stored twice; final "
        f"{seconds[0]:.1f}-{seconds[-1]:.1f} s after the kill (median {seconds[len(seconds) // 2]:.1f} s, "
        f"bound {FINAL_BOUND} s); the clients followed their turn again {follow_ups} times"
    )


def test_a_worker_pool_process_killed_mid_turn_loses_nothing(fault_stack):
    def kill_pool_process() -> None:
        (_child,) = fault_stack.kill_worker_children()  # one pool process: the one answering

    trials = [run_trial(fault_stack, f"child-kill-{n}", kill_pool_process) for n in range(TRIALS)]
    print(report("SIGKILL of the worker's pool process mid-turn", trials))


def test_a_whole_worker_killed_mid_turn_loses_nothing_once_another_worker_starts(fault_stack):
    startups: list[float] = []

    def kill_worker_and_start_another() -> None:
        fault_stack.kill_worker()
        startups.append(fault_stack.start_worker(concurrency=1))

    trials = [
        run_trial(fault_stack, f"worker-kill-{n}", kill_worker_and_start_another) for n in range(TRIALS)
    ]
    print(
        report("SIGKILL of the whole worker mid-turn, then a new worker", trials)
        + f"; new worker ready in {min(startups):.1f}-{max(startups):.1f} s"
    )


def test_a_turn_that_kills_its_worker_every_time_is_failed_at_the_attempt_cap(fault_stack):
    tenant, chat_url = fault_stack.tenant, f"{fault_stack.api_url}/chat/completions"
    text = f"cap: {WORDS}"
    # given a client waiting for the answer of a turn
    waiting = BackgroundRequest(
        "POST",
        chat_url,
        tenant.key,
        json={"model": "kill-slow", "messages": [user(text)], "session_id": "cap"},
    )
    waiting.start()
    turn = first_turn("cap")
    # when every attempt at it kills its worker's pool process mid-answer
    for attempt in range(1, MAX_ATTEMPTS + 1):
        wait_for_attempt_output(turn.id, attempt, timeout=FINAL_BOUND)
        fault_stack.kill_worker_children()
    killed_at = time.monotonic()
    # then recovery fails it at the cap, with its error
    final = wait_until_final([turn.id], timeout=FINAL_BOUND)[turn.id]
    failed_after = time.monotonic() - killed_at
    exhausted = {
        "error": {
            "message": f"The turn was given up: the worker running it was lost on each of its {MAX_ATTEMPTS} "
            "attempts.",
            "type": "server_error",
            "param": None,
            "code": "turn_attempts_exhausted",
        }
    }
    assert (final.status, final.attempts, final.error) == (
        "failed",
        MAX_ATTEMPTS,
        {"status": 500, **exhausted},
    )
    # and the waiting client gets that error
    waiting.join(timeout=FINAL_BOUND)
    assert waiting.response is not None
    assert (waiting.response.status_code, waiting.response.json()) == (500, exhausted)
    # and the session takes its next turn, which sees the question once and no answer to it
    response = chat(
        fault_stack, tenant, {"model": "echo", "messages": [user("after the cap")], "session_id": "cap"}
    )
    after = echo_answer("after the cap", earlier=[text], in_context=2)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == after
    assert transcript("cap") == [("user", text), ("user", "after the cap"), ("assistant", after)]
    assert [turn.status for turn in session_turns("cap")] == ["failed", "completed"]
    print(
        f"\na turn killing its worker on each of its {MAX_ATTEMPTS} attempts: failed "
        f"turn_attempts_exhausted {failed_after:.1f} s after the last kill; the session's next turn answered"
    )
