"""Large chat bodies are parsed and validated in the web process's parsing processes
(config/offload.py), where they hold none of its interpreter lock: the answers are the same as
for a body parsed in a thread, errors included, and a parsing process that dies costs no request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings

from config.offload import PARSE_PROCESS_NICENESS
from sessions.models import Message, Session, Turn
from tests.conftest import Tenant, stored_rows
from tests.live import Stack, start_web, stop

PROCESS_MIN_BYTES = settings.PARLEY_PARSE_PROCESS_MIN_BYTES


def post(
    stack: Stack, tenant: Tenant, content: bytes, *, path: str = "/v1/chat/completions"
) -> httpx.Response:
    return httpx.post(
        f"{stack.url}{path}",
        content=content,
        headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"},
        timeout=60,
    )


def large(body: dict[str, Any]) -> bytes:
    """The body with a first user message long enough that it goes to a parsing process."""
    padded = {**body, "messages": [{"role": "user", "content": "p" * PROCESS_MIN_BYTES}, *body["messages"]]}
    content = json.dumps(padded).encode()
    assert len(content) >= PROCESS_MIN_BYTES
    return content


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def echoed(answer: httpx.Response) -> list[str]:
    """The echo agent's answer, but for the line that quotes the (long) padding message."""
    lines = answer.json()["choices"][0]["message"]["content"].splitlines()
    return [line for line in lines if not line.startswith("Earlier you said: ")]


def small(body: dict[str, Any]) -> bytes:
    content = json.dumps(body).encode()
    assert len(content) < PROCESS_MIN_BYTES
    return content


def test_a_large_body_with_a_bad_field_is_refused_as_a_small_one_is_and_nothing_is_stored(
    stack: Stack, tenant: Tenant
) -> None:
    body = {"model": "echo", "session_id": "bad-role", "messages": [{"role": "robot", "content": "hi"}]}
    before = stored_rows(tenant)
    small_answer, large_answer = post(stack, tenant, small(body)), post(stack, tenant, large(body))
    assert (small_answer.status_code, large_answer.status_code) == (400, 400)
    assert small_answer.json()["error"] == {
        "message": "Invalid value for 'messages[0].role': \"robot\" is not a valid choice.",
        "type": "invalid_request_error",
        "param": "messages[0].role",
        "code": "invalid_value",
    }
    assert large_answer.json()["error"] == {
        "message": "Invalid value for 'messages[1].role': \"robot\" is not a valid choice.",
        "type": "invalid_request_error",
        "param": "messages[1].role",
        "code": "invalid_value",
    }
    assert stored_rows(tenant) == before


def test_a_large_body_that_is_not_json_is_refused_with_the_parsers_message(
    stack: Stack, tenant: Tenant
) -> None:
    content = large({"model": "echo", "messages": [{"role": "user", "content": "hi"}]})[:-1]
    try:
        json.loads(content)
    except ValueError as exc:
        reason = str(exc)
    response = post(stack, tenant, content)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": f"The request body is not valid JSON: {reason}",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_json",
        }
    }


def test_a_large_body_on_the_nlx_route_names_the_agent_by_the_deployment(
    stack: Stack, tenant: Tenant
) -> None:
    # given a large body for NLX's conversation route
    body = {"model": "nlx:large-nlx", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    # when it is sent, and again with a model that is not NLX's
    answer = post(stack, tenant, large(body), path="/echo/web-en-US/chat/completions")
    refused = post(stack, tenant, large({**body, "model": "gpt-4o"}), path="/echo/web-en-US/chat/completions")
    # then the deployment's agent answered on the conversation's session; the other is refused
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["X-Session-Id"] == "large-nlx"
    assert echoed(answer) == ["You said: hi", "(2 messages in context)"]
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": "On this route 'model' is 'nlx' or 'nlx:{conversationId}'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "invalid_request",
    }


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


def parsing_processes(web_pid: int) -> list[int]:
    return [pid for pid in children(web_pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def niceness(pid: int) -> int:
    # /proc/PID/stat: the 19th field, the 17th after the command's closing parenthesis.
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[16])


def web_process(stack: Stack) -> subprocess.Popen:
    return next(process for process in stack.processes if Path(process.args[0]).name == "uvicorn")


def started_parsing_processes(stack: Stack) -> list[int]:
    deadline = time.monotonic() + 30
    while len(found := parsing_processes(web_process(stack).pid)) < settings.PARLEY_PARSE_PROCESSES:
        assert time.monotonic() < deadline, "the parsing processes did not start"
        time.sleep(0.1)
    return found


def test_parsing_processes_run_at_a_lower_cpu_priority_than_the_web_process(stack: Stack) -> None:
    web = niceness(web_process(stack).pid)
    assert [niceness(pid) for pid in started_parsing_processes(stack)] == [web + PARSE_PROCESS_NICENESS] * 2


@pytest.mark.production_only
def test_celery_worker_processes_run_at_a_lower_cpu_priority_than_the_web_process(stack: Stack) -> None:
    worker = next(process for process in stack.processes if "worker" in process.args)
    web = niceness(web_process(stack).pid)
    assert settings.PARLEY_WORKER_NICENESS == 10
    assert [niceness(pid) for pid in children(worker.pid)] == [web + 10] * 2  # the tests' two children


def test_a_parsing_process_that_dies_costs_no_request_and_the_pool_starts_again(
    stack: Stack, tenant: Tenant
) -> None:
    web = web_process(stack)
    # given the web process's parsing processes, started with it
    before = started_parsing_processes(stack)
    # when one of them is killed, and two large requests come
    os.kill(before[0], signal.SIGKILL)
    time.sleep(0.2)
    sessions = ["after-a-death-1", "after-a-death-2"]
    answers = [
        post(
            stack, tenant, large({"model": "echo", "session_id": session_id, "messages": [user(session_id)]})
        )
        for session_id in sessions
    ]
    # then both are answered (the first in a thread, the pool broken; the next by a new pool)
    assert [answer.status_code for answer in answers] == [200, 200], answers[0].text[:300]
    assert [echoed(answer) for answer in answers] == [
        [f"You said: {session_id}", "(2 messages in context)"] for session_id in sessions
    ]
    for session_id in sessions:
        session = Session.objects.get(organization=tenant.organization, external_id=session_id)
        assert list(Message.objects.filter(session=session).values_list("role", flat=True)) == [
            "user",
            "user",
            "assistant",
        ]
    after = parsing_processes(web.pid)
    assert len(after) == settings.PARLEY_PARSE_PROCESSES
    assert before[0] not in after


def test_a_large_bodys_messages_are_stored_as_sent(stack: Stack, tenant: Tenant) -> None:
    # given messages of every shape the encoder meets: text beyond ASCII, escapes, parts, tool calls
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "ü"}'}}
    messages = [
        {"role": "system", "content": 'Quotes " and \\ backslashes, a tab\t, an emoji 🦜, Ωmega'},
        {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "二"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ü found"},
        {"role": "user", "content": "and now?"},
    ]
    content = large({"model": "echo", "messages": messages})
    # when it is sent
    response = post(stack, tenant, content)
    # then the turn's input holds the messages as sent (the padding first)
    assert response.status_code == 200, response.text[:300]
    turn = Turn.objects.get(pk=response.headers["X-Turn-Id"])
    assert turn.input_messages == json.loads(content)["messages"]


def test_parsing_processes_end_with_their_web_process_however_it_ends(stack: Stack, tmp_path: Path) -> None:
    # given a second web process of the stack's, with its parsing processes
    _url, web, _log = start_web(stack.env, tmp_path, name="short-lived-web")
    try:
        deadline = time.monotonic() + 30
        while len(started := parsing_processes(web.pid)) < settings.PARLEY_PARSE_PROCESSES:
            assert time.monotonic() < deadline, "the parsing processes did not start"
            time.sleep(0.1)
        # when it is killed, with no chance to stop them
        web.kill()
        web.wait(timeout=10)
        # then they end too
        deadline = time.monotonic() + 10
        while alive := [pid for pid in started if Path(f"/proc/{pid}").exists() and not zombie(pid)]:
            assert time.monotonic() < deadline, f"parsing processes {alive} outlived their web process"
            time.sleep(0.1)
    finally:
        stop([web])


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return False
