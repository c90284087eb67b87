"""Schemathesis against the live stack's /v1/openapi.json, in the run mode under test: every phase
(examples, coverage, fuzzing, stateful, the last along the description's links) and every check,
with an API key holding every scope. The description must say what the server accepts and
answers: no server error, no answer off the description, no valid request refused and no invalid
one accepted, except where tests/schemathesis.toml says why a rule cannot be described.

Bounded by time (PARLEY_SCHEMATHESIS_SECONDS, default 60) and examples per operation
(PARLEY_SCHEMATHESIS_EXAMPLES, default 20); the README's "API conformance" has the long run."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import httpx
import pytest

from accounts.models import ALL_SCOPES, ApiKey
from agents.models import Agent
from tests.conftest import Tenant, make_key
from tests.live import BIN, ROOT, Stack, api
from tests.schemathesis_hooks import LOOPBACK_HOST, LOOPBACK_URL
from tests.test_validation import INVALID, USER_HI, assert_refused_and_nothing_stored, case

SECONDS = int(os.environ.get("PARLEY_SCHEMATHESIS_SECONDS", "60"))
EXAMPLES = int(os.environ.get("PARLEY_SCHEMATHESIS_EXAMPLES", "20"))
SEED = os.environ.get("PARLEY_SCHEMATHESIS_SEED", "20260101")
# Loading the description and finishing the last requests come on top of the time budget.
SLACK_SECONDS = 120


def test_the_api_answers_as_its_openapi_description_says(stack: Stack, tenant: Tenant) -> None:
    # given: a key with every scope, and the echo agent answering requests that name no model
    key = make_key(tenant, list(ALL_SCOPES))
    settings = api(stack, tenant, "PUT", "/settings/automation", json={"default_agent": "echo"})
    assert settings.status_code == 200, settings.text

    # when
    run = subprocess.run(
        [
            str(BIN / "st"),
            "--config-file",
            "tests/schemathesis.toml",
            "run",
            f"{stack.url}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(EXAMPLES),
            "--max-time",
            str(SECONDS),
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + SLACK_SECONDS,
    )

    # then
    print(run.stdout[run.stdout.rfind("=== SUMMARY") :])  # the figures, with -s or -rP
    assert run.returncode == 0, run.stdout[-30000:] + run.stderr[-5000:]
    # The run did not lock itself out (a generated DELETE /v1/api-keys/{id} could name its key).
    keys = ApiKey.objects.filter(organization=tenant.organization)
    (own_key,) = [found for found in keys if key.startswith(found.prefix)]
    assert own_key.revoked_at is None
    # Whatever agents it created or changed can call loopback only.
    for agent in Agent.objects.filter(organization=tenant.organization):
        assert outbound_destinations(agent) <= {LOOPBACK_URL, LOOPBACK_HOST}, agent.slug


def outbound_destinations(agent: Agent) -> set[str]:
    """Every URL and allowed host of an agent's backend configuration and tools."""
    found: set[str] = set()

    def collect(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                collect(item, name)
        elif isinstance(value, list):
            for item in value:
                collect(item, key)
        elif isinstance(value, str) and ("://" in value or key == "allowed_hosts"):
            found.add(value)

    collect(agent.backend_config)
    collect(agent.tools)
    return found


# --- what earlier runs found: 500s, and methods answered that should not have been ---------------

NULL_TOOL_CALL = {"role": "assistant", "content": None, "tool_calls": [None]}
OBJECT_PART_TYPE = {"role": "user", "content": [{"type": {}, "text": "hi"}]}


@pytest.mark.parametrize(
    ("changes", "param", "loc", "code"),
    [
        case({"tools": [None]}, "tools[0]", ("tools", 0), INVALID, id="null-tool"),
        case({"functions": [None]}, "functions[0]", ("functions", 0), INVALID, id="null-function"),
        case(
            {"messages": [USER_HI, NULL_TOOL_CALL]},
            "messages[1].tool_calls[0]",
            ("messages", 1, "tool_calls", 0),
            INVALID,
            id="null-tool-call",
        ),
        case(
            {"messages": [OBJECT_PART_TYPE]},
            "messages[0].content[0].type",
            ("messages", 0, "content", 0, "type"),
            INVALID,
            id="content-part-type-an-object",
        ),
    ],
)
def test_null_list_items_and_an_object_part_type_are_refused_not_a_server_error(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)


def test_a_last_event_id_with_a_digit_other_than_0_to_9_is_refused(stack: Stack, tenant: Tenant) -> None:
    # given: a finished turn
    chat = api(stack, tenant, "POST", "/chat/completions", json={"model": "echo", "messages": [USER_HI]})
    assert chat.status_code == 200, chat.text

    # when: "²" (latin-1 0xB2), a digit to str.isdigit but not to int()
    response = api(
        stack, tenant, "GET", f"/turns/{chat.headers['X-Turn-Id']}/events", headers={"Last-Event-ID": b"\xb2"}
    )

    # then
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "Last-Event-ID must be the id of an event of this turn.",
            "type": "invalid_request_error",
            "param": "Last-Event-ID",
            "code": "invalid_request",
        }
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "TRACE"])
def test_health_checks_answer_other_methods_with_405_and_allow(stack: Stack, path: str, method: str) -> None:
    response = httpx.request(method, f"{stack.url}{path}", timeout=30)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.content == b""


def test_the_docs_page_answers_options_with_405_and_allow(stack: Stack) -> None:
    response = httpx.options(f"{stack.url}/v1/docs", timeout=30)

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json() == {
        "error": {
            "message": 'Method "OPTIONS" not allowed.',
            "type": "invalid_request_error",
            "param": None,
            "code": "method_not_allowed",
        }
    }
