"""Workers killed mid-turn (production mode, the fault tests' own stack, tests/faults/conftest.py).
Each trial: four clients stream a turn each in sessions of their own (one per pool process of the
worker); once every turn has stored part of its answer, the pool processes are SIGKILLed, or the
whole worker is (and another worker starts); meanwhile each client sends its session's next
request. Parley's own recovery (beat) runs the turns again within the lease and half a minute;
no question is lost and no answer stored twice; a client that saw a lost attempt follows its turn
to the one answer; the next turns run after them, seeing them. A turn that kills its worker every
time is failed at the attempt cap, and its session goes on. PARLEY_FAULT_TRIALS sets the number
of trials of each kill (2; 20 with make test-faults)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.faults.stack import (
    LEASE_SECONDS,
    MAX_ATTEMPTS,
    TRIALS,
    WORKER_CONCURRENCY,
    BackgroundRequest,
    FaultStack,
    chat,
    echo_answer,
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
# About 3 s of answer: the four turns are all still answering when the kill comes.
WORDS = " ".join(f"w{n}" for n in range(16))


@dataclass
class Trial:
    turns: int
    seconds_to_final: float
    follow_ups: int


def run_trial(stack: FaultStack, name: str, kill: Callable[[], None]) -> Trial:
    tenant, chat_url = stack.tenant, f"{stack.api_url}/chat/completions"
    sessions = [f"{name}-{n}" for n in range(WORKER_CONCURRENCY)]
    texts = {session: f"{session}: {WORDS}" for session in sessions}
    # given clients streaming turns that the worker's pool processes are answering, each with part
    # of its answer stored
    firsts = {
        session: TimedStream(
            chat_url,
            tenant.key,
            {"model": "slow", "messages": [user(texts[session])], "stream": True, "session_id": session},
        )
        for session in sessions
    }
    for stream in firsts.values():
        stream.start()
    turns = {session: first_turn(session).id for session in sessions}
    for turn_id in turns.values():
        wait_for_attempt_output(turn_id, 1)
    # when the worker is killed
    killed_at = time.monotonic()
    kill()
    # and each client sends its session's next request meanwhile
    seconds = {
        session: BackgroundRequest(
            "POST",
            chat_url,
            tenant.key,
            json={"model": "echo", "messages": [user("next")], "session_id": session},
        )
        for session in sessions
    }
    for request in seconds.values():
        request.start()
    # then every turn is answered, by another attempt, within the lease and half a minute
    final = wait_until_final(turns.values(), timeout=FINAL_BOUND)
    seconds_to_final = time.monotonic() - killed_at
    assert {(turn.status, turn.attempts) for turn in final.values()} == {("completed", 2)}
    follow_ups = 0
    for session in sessions:
        answer = echo_answer(texts[session])
        # and a client that saw the lost attempt's start follows its turn to the one answer
        first = firsts[session]
        first.join(timeout=FINAL_BOUND)
        assert first.ended_cleanly, f"{session}: {first.failure!r} {first.lines[-5:]}"
        events, followed = followed_to_the_end(first, stack.api_url, tenant.key, turns[session])
        follow_ups += followed
        got = SseRead(events=events)
        assert (got.content(), got.done_count) == (answer, 1), session
        # and the session's next turn ran after it, seeing it
        second = seconds[session]
        second.join(timeout=FINAL_BOUND)
        next_answer = echo_answer("next", earlier=[texts[session]], in_context=3)
        assert second.response is not None and second.response.status_code == 200, second.response
        assert second.response.json()["choices"][0]["message"]["content"] == next_answer
        # and nothing was lost or stored twice
        assert transcript(session) == [
            ("user", texts[session]),
            ("assistant", answer),
            ("user", "next"),
            ("assistant", next_answer),
        ]
    return Trial(turns=len(sessions), seconds_to_final=seconds_to_final, follow_ups=follow_ups)


def report(what: str, trials: list[Trial]) -> str:
    seconds = sorted(trial.seconds_to_final for trial in trials)
    follow_ups = sum(trial.follow_ups for trial in trials)
    return (
        f"\n{what}: {len(trials)} trials, {sum(trial.turns for trial in trials)} turns killed mid-answer, "
        f"0 questions lost, 0 answers stored twice; all final {seconds[0]:.1f}-{seconds[-1]:.1f} s after "
        f"the kill (median {seconds[len(seconds) // 2]:.1f} s, bound {FINAL_BOUND} s); the clients followed "
        f"their turn again {follow_ups} times"
    )


def test_the_worker_pool_processes_killed_mid_turn_lose_nothing(fault_stack):
    trials = [
        run_trial(fault_stack, f"pool-kill-{n}", fault_stack.kill_worker_children) for n in range(TRIALS)
    ]
    print(report("SIGKILL of the worker's pool processes mid-turn", trials))


def test_a_whole_worker_killed_mid_turn_loses_nothing_once_another_worker_starts(fault_stack):
    startups: list[float] = []

    def kill_worker_and_start_another() -> None:
        fault_stack.kill_worker()
        startups.append(fault_stack.start_worker(concurrency=WORKER_CONCURRENCY))

    trials = [
        run_trial(fault_stack, f"worker-kill-{n}", kill_worker_and_start_another) for n in range(TRIALS)
    ]
    print(
        report("SIGKILL of the whole worker mid-turn, then a new worker", trials)
        + f"; the new worker was ready {min(startups):.1f}-{max(startups):.1f} s after the kill"
    )


def test_a_turn_that_kills_its_worker_every_time_is_failed_at_the_attempt_cap(fault_stack):
    tenant, chat_url = fault_stack.tenant, f"{fault_stack.api_url}/chat/completions"
    text = f"cap: {WORDS}"
    # given a client waiting for the answer of a turn
    waiting = BackgroundRequest(
        "POST",
        chat_url,
        tenant.key,
        json={"model": "slow", "messages": [user(text)], "session_id": "cap"},
    )
    waiting.start()
    turn = first_turn("cap")
    # when every attempt at it kills its worker's pool processes mid-answer
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
