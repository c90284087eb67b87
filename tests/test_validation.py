"""Validation of chat completion requests against the live server: every invalid request is a
400 in OpenAI's envelope naming the offending field (plus the FastAPI-style `detail` list), and
a refused request stores nothing. Valid boundary values and unknown fields are accepted.
Bodies are sent as bytes, so that they may hold what a JSON library refuses to write: a lone
surrogate (as its escape) or a number like 1e400."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import openai
import pytest

from sessions.models import Session, Turn
from tests.conftest import Tenant, stored_rows
from tests.live import Stack

DROP = object()  # marks a field to leave out of the request
NUL = "\x00"
LONE_SURROGATE = "\ud800"
NUL_MESSAGE = "Null characters are not allowed."
SURROGATE_MESSAGE = "Surrogate characters are not allowed: U+D800."


class Raw:
    """A JSON number written as it is (1e400), where no JSON library would write it."""

    def __init__(self, text: str) -> None:
        self.text = text


def encode_body(body: Any) -> bytes:
    """JSON as bytes, ASCII only: a lone surrogate goes as its escape, a Raw as its text."""
    text = json.dumps(body, default=lambda raw: f"<raw>{raw.text}</raw>")
    return re.sub(r'"<raw>(.*?)</raw>"', r"\1", text).encode("ascii")


USER_HI = {"role": "user", "content": "hi"}
ECHO_OF_HI = "You said: hi\n(1 message in context)"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASSISTANT_CALLING_WEATHER = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    ],
}

INVALID = "invalid_value"
MISSING = "missing_required_parameter"


def case(changes: dict[str, Any], param: str, loc: tuple, code: str, *, id: str) -> Any:
    return pytest.param(changes, param, loc, code, id=id)


def assistant_calling(call_id: str = "call_1", arguments: str = "{}") -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


MESSAGE_CASES = [
    case({"messages": DROP}, "messages", ("messages",), MISSING, id="messages-missing"),
    case({"messages": []}, "messages", ("messages",), INVALID, id="messages-empty"),
    case({"messages": "hi"}, "messages", ("messages",), INVALID, id="messages-not-a-list"),
    case({"messages": ["hi"]}, "messages[0]", ("messages", 0), INVALID, id="message-not-an-object"),
    case(
        {"messages": [{"role": "robot", "content": "hi"}]},
        "messages[0].role",
        ("messages", 0, "role"),
        INVALID,
        id="role-unknown",
    ),
    case(
        {"messages": [{"content": "hi"}]},
        "messages[0].role",
        ("messages", 0, "role"),
        MISSING,
        id="role-missing",
    ),
    case(
        {"messages": [{"role": "user", "content": 42}]},
        "messages[0].content",
        ("messages", 0, "content"),
        INVALID,
        id="content-a-number",
    ),
    case(
        {"messages": [{"role": "user", "content": []}]},
        "messages[0].content",
        ("messages", 0, "content"),
        INVALID,
        id="content-parts-empty",
    ),
    case(
        {"messages": [{"role": "user", "content": [{"type": "video", "video": {"url": "x"}}]}]},
        "messages[0].content[0].type",
        ("messages", 0, "content", 0, "type"),
        INVALID,
        id="content-part-type-unknown",
    ),
    case(
        {
            "messages": [
                {
                    "role": "system",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                },
                USER_HI,
            ]
        },
        "messages[0].content[0].type",
        ("messages", 0, "content", 0, "type"),
        INVALID,
        id="image-part-in-system-message",
    ),
    case(
        {"messages": [ASSISTANT_CALLING_WEATHER, {"role": "tool", "content": "sunny"}]},
        "messages[1].tool_call_id",
        ("messages", 1, "tool_call_id"),
        MISSING,
        id="tool-message-without-tool-call-id",
    ),
    case(
        {"messages": [USER_HI, {"role": "assistant"}]},
        "messages[1].content",
        ("messages", 1, "content"),
        MISSING,
        id="assistant-message-without-content-or-tool-calls",
    ),
    case(
        {"messages": [{**ASSISTANT_CALLING_WEATHER, "role": "user", "content": "hi"}]},
        "messages[0].tool_calls",
        ("messages", 0, "tool_calls"),
        INVALID,
        id="user-message-with-tool-calls",
    ),
]

SAMPLING_CASES = [
    case({"temperature": 2.5}, "temperature", ("temperature",), INVALID, id="temperature-above-2"),
    case({"temperature": -0.1}, "temperature", ("temperature",), INVALID, id="temperature-below-0"),
    case({"temperature": "0.5"}, "temperature", ("temperature",), INVALID, id="temperature-a-string"),
    case({"temperature": True}, "temperature", ("temperature",), INVALID, id="temperature-a-boolean"),
    case({"top_p": 1.5}, "top_p", ("top_p",), INVALID, id="top-p-above-1"),
    case({"n": 0}, "n", ("n",), INVALID, id="n-zero"),
    case({"n": "2"}, "n", ("n",), INVALID, id="n-a-string"),
    case(
        {"presence_penalty": 3}, "presence_penalty", ("presence_penalty",), INVALID, id="presence-penalty-3"
    ),
    case(
        {"frequency_penalty": -3},
        "frequency_penalty",
        ("frequency_penalty",),
        INVALID,
        id="frequency-penalty-minus-3",
    ),
    case(
        {"top_logprobs": 5},
        "top_logprobs",
        ("top_logprobs",),
        INVALID,
        id="top-logprobs-without-logprobs",
    ),
    case(
        {"logprobs": True, "top_logprobs": 21},
        "top_logprobs",
        ("top_logprobs",),
        INVALID,
        id="top-logprobs-21",
    ),
    case({"logprobs": "yes"}, "logprobs", ("logprobs",), INVALID, id="logprobs-a-string"),
    case({"max_tokens": 0}, "max_tokens", ("max_tokens",), INVALID, id="max-tokens-zero"),
    case(
        {"max_completion_tokens": 0},
        "max_completion_tokens",
        ("max_completion_tokens",),
        INVALID,
        id="max-completion-tokens-zero",
    ),
    case({"stop": ["a", "b", "c", "d", "e"]}, "stop", ("stop",), INVALID, id="stop-five-strings"),
    case({"stop": 42}, "stop", ("stop",), INVALID, id="stop-a-number"),
    case({"seed": "7"}, "seed", ("seed",), INVALID, id="seed-a-string"),
    case(
        {"logit_bias": {"abc": 1}},
        "logit_bias.abc",
        ("logit_bias", "abc"),
        INVALID,
        id="logit-bias-key-not-an-integer",
    ),
    case(
        {"metadata": {f"key{index}": "value" for index in range(17)}},
        "metadata",
        ("metadata",),
        INVALID,
        id="metadata-17-keys",
    ),
]

FORMAT_AND_TOOL_CASES = [
    case(
        {"response_format": {"type": "xml"}},
        "response_format.type",
        ("response_format", "type"),
        INVALID,
        id="response-format-xml",
    ),
    case(
        {"response_format": {"type": "json_schema"}},
        "response_format.json_schema",
        ("response_format", "json_schema"),
        MISSING,
        id="json-schema-format-without-json-schema",
    ),
    case(
        {"tools": [{"type": "function", "function": {"name": "get weather!"}}]},
        "tools[0].function.name",
        ("tools", 0, "function", "name"),
        INVALID,
        id="tool-function-name-malformed",
    ),
    case(
        {"tools": [{"type": "function", "function": {"name": "get_weather\n"}}]},
        "tools[0].function.name",
        ("tools", 0, "function", "name"),
        INVALID,
        id="tool-function-name-with-a-trailing-newline",
    ),
    case(
        {"tools": [WEATHER_TOOL, WEATHER_TOOL]},
        "tools",
        ("tools",),
        INVALID,
        id="tool-names-duplicated",
    ),
    case(
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
        "tool_choice.function.name",
        ("tool_choice", "function", "name"),
        INVALID,
        id="tool-choice-names-unknown-function",
    ),
    case(
        {"tool_choice": "required"}, "tool_choice", ("tool_choice",), INVALID, id="tool-choice-without-tools"
    ),
    case(
        {"tools": [WEATHER_TOOL], "tool_choice": "sometimes"},
        "tool_choice",
        ("tool_choice",),
        INVALID,
        id="tool-choice-unknown-mode",
    ),
    case(
        {"tools": [WEATHER_TOOL], "functions": [{"name": "get_time"}]},
        "functions",
        ("functions",),
        INVALID,
        id="functions-and-tools-together",
    ),
    case(
        {"stream": False, "stream_options": {"include_usage": True}},
        "stream_options",
        ("stream_options",),
        INVALID,
        id="stream-options-with-stream-false",
    ),
]

SESSION_AND_MODEL_CASES = [
    case({"session_id": "s" * 129}, "session_id", ("session_id",), INVALID, id="session-id-129-characters"),
    case({"session_id": "my session"}, "session_id", ("session_id",), INVALID, id="session-id-with-a-space"),
    case({"session_id": 12345}, "session_id", ("session_id",), INVALID, id="session-id-a-number"),
    case({"session_id": ""}, "session_id", ("session_id",), INVALID, id="session-id-empty"),
    case(
        {"session_id": "my-session\n"},
        "session_id",
        ("session_id",),
        INVALID,
        id="session-id-with-a-trailing-newline",
    ),
    case({"model": DROP}, "model", ("model",), MISSING, id="model-missing"),
    case({"model": 42}, "model", ("model",), INVALID, id="model-a-number"),
    case({"model": "echo:bad id"}, "model", ("model",), INVALID, id="model-session-malformed"),
    case(
        {"model": "echo:conversation-a", "session_id": "conversation-b"},
        "session_id",
        ("session_id",),
        INVALID,
        id="model-session-differs-from-session-id",
    ),
]


# Every string a turn stores (messages, their parts, names, tool calls and results, the session
# id, the turn's parameters): PostgreSQL can store no NUL and no lone surrogate, so neither mode
# takes one. Each is named by its exact place; a key by the object that holds it.
STORED_TEXT_CASES = [
    case(
        {"messages": [{"role": "user", "content": f"a{NUL}b"}]},
        "messages[0].content",
        ("messages", 0, "content"),
        INVALID,
        id="nul-in-content",
    ),
    case(
        {"messages": [{"role": "user", "content": f"a{LONE_SURROGATE}"}]},
        "messages[0].content",
        ("messages", 0, "content"),
        INVALID,
        id="lone-surrogate-in-content",
    ),
    case(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "ok"}, {"type": "text", "text": NUL}]}
            ]
        },
        "messages[0].content[1].text",
        ("messages", 0, "content", 1, "text"),
        INVALID,
        id="nul-in-a-text-part",
    ),
    case(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": f"https://example.com/{LONE_SURROGATE}.png"},
                        }
                    ],
                }
            ]
        },
        "messages[0].content[0].image_url.url",
        ("messages", 0, "content", 0, "image_url", "url"),
        INVALID,
        id="lone-surrogate-in-an-image-url",
    ),
    case(
        {"messages": [USER_HI, {"role": "assistant", "content": [{"type": "refusal", "refusal": NUL}]}]},
        "messages[1].content[0].refusal",
        ("messages", 1, "content", 0, "refusal"),
        INVALID,
        id="nul-in-a-refusal-part",
    ),
    case(
        {"messages": [{"role": "user", "content": "hi", "name": f"ada{NUL}"}]},
        "messages[0].name",
        ("messages", 0, "name"),
        INVALID,
        id="nul-in-a-name",
    ),
    case(
        {"messages": [assistant_calling(call_id=f"call{NUL}")]},
        "messages[0].tool_calls[0].id",
        ("messages", 0, "tool_calls", 0, "id"),
        INVALID,
        id="nul-in-a-tool-call-id",
    ),
    case(
        {"messages": [assistant_calling(arguments=f'{{"city": "{LONE_SURROGATE}"}}')]},
        "messages[0].tool_calls[0].function.arguments",
        ("messages", 0, "tool_calls", 0, "function", "arguments"),
        INVALID,
        id="lone-surrogate-in-tool-call-arguments",
    ),
    case(
        {
            "messages": [
                assistant_calling(),
                {"role": "tool", "tool_call_id": "call_1", "content": f"sunny{NUL}"},
            ]
        },
        "messages[1].content",
        ("messages", 1, "content"),
        INVALID,
        id="nul-in-a-tool-result",
    ),
    case(
        {
            "messages": [
                assistant_calling(),
                {"role": "tool", "tool_call_id": f"call_1{LONE_SURROGATE}", "content": "x"},
            ]
        },
        "messages[1].tool_call_id",
        ("messages", 1, "tool_call_id"),
        INVALID,
        id="lone-surrogate-in-a-tool-call-id-of-a-result",
    ),
    case({"session_id": f"s{NUL}"}, "session_id", ("session_id",), INVALID, id="nul-in-the-session-id"),
    case(
        {"session_id": DROP, "conversation_id": LONE_SURROGATE},
        "conversation_id",
        ("conversation_id",),
        INVALID,
        id="lone-surrogate-in-conversation-id",
    ),
    case({"model": f"echo{NUL}"}, "model", ("model",), INVALID, id="nul-in-the-model"),
    case({"user": f"customer{NUL}"}, "user", ("user",), INVALID, id="nul-in-the-user"),
    case({"metadata": {"k": NUL}}, "metadata.k", ("metadata", "k"), INVALID, id="nul-in-a-metadata-value"),
    case({"metadata": {f"k{NUL}": "v"}}, "metadata", ("metadata",), INVALID, id="nul-in-a-metadata-key"),
    case(
        {"metadata": {LONE_SURROGATE: "v"}},
        "metadata",
        ("metadata",),
        INVALID,
        id="lone-surrogate-as-a-metadata-key",
    ),
    case({"stop": ["end", LONE_SURROGATE]}, "stop[1]", ("stop", 1), INVALID, id="lone-surrogate-in-a-stop"),
    case(
        {"tools": [{"type": "function", "function": {"name": "get_weather", "description": NUL}}]},
        "tools[0].function.description",
        ("tools", 0, "function", "description"),
        INVALID,
        id="nul-in-a-tool-description",
    ),
    case(
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {"properties": {"city": {"description": LONE_SURROGATE}}},
                    },
                }
            ]
        },
        "tools[0].function.parameters.properties.city.description",
        ("tools", 0, "function", "parameters", "properties", "city", "description"),
        INVALID,
        id="lone-surrogate-deep-in-tool-parameters",
    ),
    case(
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": {"title": NUL}},
            }
        },
        "response_format.json_schema.schema.title",
        ("response_format", "json_schema", "schema", "title"),
        INVALID,
        id="nul-in-a-response-schema",
    ),
    case(
        {"x_vendor": {"note": NUL}},
        "x_vendor.note",
        ("x_vendor", "note"),
        INVALID,
        id="nul-in-an-ignored-field",
    ),
]

# Numbers JSON can write but no field can hold: not finite (1e400 reads as infinity), or wider
# than the field (integers are 64-bit unless a field says less), or digits of another script.
NUMBER_CASES = [
    case({"temperature": Raw("1e400")}, "temperature", ("temperature",), INVALID, id="temperature-1e400"),
    case({"top_p": Raw("-1e400")}, "top_p", ("top_p",), INVALID, id="top-p-minus-1e400"),
    case({"temperature": 10**400}, "temperature", ("temperature",), INVALID, id="temperature-10-to-the-400"),
    case({"seed": 10**400}, "seed", ("seed",), INVALID, id="seed-10-to-the-400"),
    case({"seed": 2**63}, "seed", ("seed",), INVALID, id="seed-above-int64"),
    case({"seed": -(2**63) - 1}, "seed", ("seed",), INVALID, id="seed-below-int64"),
    case({"max_tokens": 10**400}, "max_tokens", ("max_tokens",), INVALID, id="max-tokens-10-to-the-400"),
    case({"n": 10**400}, "n", ("n",), INVALID, id="n-10-to-the-400"),
    case(
        {"logit_bias": {"50256": Raw("1e400")}},
        "logit_bias.50256",
        ("logit_bias", "50256"),
        INVALID,
        id="logit-bias-1e400",
    ),
    case(
        {"logit_bias": {"\u00b2": 1}},
        "logit_bias.\u00b2",
        ("logit_bias", "\u00b2"),
        INVALID,
        id="logit-bias-key-superscript-two",
    ),
    case(
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "get_weather", "parameters": {"maximum": Raw("1e400")}},
                }
            ]
        },
        "tools[0].function.parameters.maximum",
        ("tools", 0, "function", "parameters", "maximum"),
        INVALID,
        id="1e400-in-tool-parameters",
    ),
]

WRONG_TYPE_CASES = [
    case({"user": 42}, "user", ("user",), INVALID, id="user-a-number"),
    case({"metadata": "tier=gold"}, "metadata", ("metadata",), INVALID, id="metadata-a-string"),
    case(
        {"metadata": {"tier": 1}},
        "metadata.tier",
        ("metadata", "tier"),
        INVALID,
        id="metadata-value-a-number",
    ),
    case(
        {"messages": [{"role": "user", "content": "hi", "name": 7}]},
        "messages[0].name",
        ("messages", 0, "name"),
        INVALID,
        id="name-a-number",
    ),
    case(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]},
        "messages[0].content[0].text",
        ("messages", 0, "content", 0, "text"),
        INVALID,
        id="text-part-a-number",
    ),
    case(
        {"messages": [assistant_calling(arguments={"city": "Paris"})]},
        "messages[0].tool_calls[0].function.arguments",
        ("messages", 0, "tool_calls", 0, "function", "arguments"),
        INVALID,
        id="tool-call-arguments-an-object",
    ),
    case({"stream": "true"}, "stream", ("stream",), INVALID, id="stream-a-string"),
    case({"tools": {"type": "function"}}, "tools", ("tools",), INVALID, id="tools-an-object"),
    case(
        {"response_format": "json"},
        "response_format",
        ("response_format",),
        INVALID,
        id="response-format-a-string",
    ),
    case({"stop": ["end", 1]}, "stop", ("stop",), INVALID, id="stop-holding-a-number"),
]


def request_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "echo", "messages": [USER_HI], "session_id": f"s-{uuid.uuid4().hex}"}
    body.update(changes)
    return {key: value for key, value in body.items() if value is not DROP}


def post_chat(stack: Stack, tenant: Tenant, body: Any) -> httpx.Response:
    return httpx.post(
        f"{stack.api_url}/chat/completions",
        content=encode_body(body),
        headers={"Authorization": f"Bearer {tenant.key}", "Content-Type": "application/json"},
        timeout=30,
    )


def session_ids_named_by(body: dict[str, Any]) -> list[str]:
    """Every session id a request names, in `session_id` or in the `agent:session` model form
    (but for those no session can have: the database could not even be asked about a NUL)."""
    named = []
    if "session_id" in body:
        named.append(str(body["session_id"]))
    model = body.get("model")
    if isinstance(model, str) and ":" in model:
        named.append(model.partition(":")[2])
    return [session_id for session_id in named if session_id.isprintable()]


def assert_validation_envelope(payload: dict[str, Any], *, param: str, loc: tuple, code: str) -> None:
    assert set(payload) == {"error", "detail"}
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    detail = payload["detail"]
    assert isinstance(detail, list)
    assert detail
    for entry in detail:
        assert set(entry) == {"loc", "msg", "type"}
        assert entry["loc"][0] == "body"
        assert isinstance(entry["msg"], str)
        assert entry["msg"]
    assert detail[0]["loc"] == ["body", *loc]


def assert_refused_and_nothing_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> httpx.Response:
    # given
    body = request_body(**changes)
    before = stored_rows(tenant)
    # when
    response = post_chat(stack, tenant, body)
    # then
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert_validation_envelope(response.json(), param=param, loc=loc, code=code)
    assert stored_rows(tenant) == before
    for session_id in session_ids_named_by(body):
        assert not Session.objects.filter(organization=tenant.organization, external_id=session_id).exists()
    return response


@pytest.mark.parametrize(("changes", "param", "loc", "code"), MESSAGE_CASES)
def test_invalid_messages_are_refused_naming_the_field_and_nothing_is_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)


@pytest.mark.parametrize(("changes", "param", "loc", "code"), SAMPLING_CASES)
def test_out_of_range_or_mistyped_parameters_are_refused_naming_the_field_and_nothing_is_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)


@pytest.mark.parametrize(("changes", "param", "loc", "code"), FORMAT_AND_TOOL_CASES)
def test_invalid_formats_and_tools_are_refused_naming_the_field_and_nothing_is_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)


@pytest.mark.parametrize(("changes", "param", "loc", "code"), STORED_TEXT_CASES)
def test_nul_or_lone_surrogate_in_any_string_is_refused_naming_its_place_and_nothing_is_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    response = assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)
    # then: the message says which rule was broken
    expected = SURROGATE_MESSAGE if "\\ud800" in repr(changes) else NUL_MESSAGE
    assert response.json()["detail"][0]["msg"].endswith(expected)


@pytest.mark.parametrize(("changes", "param", "loc", "code"), NUMBER_CASES)
def test_numbers_no_field_can_hold_are_refused_naming_the_field_and_nothing_is_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)


@pytest.mark.parametrize(("changes", "param", "loc", "code"), WRONG_TYPE_CASES)
def test_values_of_the_wrong_json_type_are_refused_naming_the_field_and_nothing_is_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)


@pytest.mark.parametrize(("changes", "param", "loc", "code"), SESSION_AND_MODEL_CASES)
def test_invalid_session_ids_and_models_are_refused_and_no_session_is_created(
    stack: Stack, tenant: Tenant, changes: dict[str, Any], param: str, loc: tuple, code: str
) -> None:
    assert_refused_and_nothing_stored(stack, tenant, changes, param, loc, code)


def test_refused_request_to_an_existing_session_leaves_its_transcript_unchanged(
    stack: Stack, tenant: Tenant
) -> None:
    # given
    session_id = f"s-{uuid.uuid4().hex}"
    first = post_chat(stack, tenant, request_body(session_id=session_id))
    assert first.status_code == 200, first.text
    before = stored_rows(tenant)
    assert before == {"sessions": 1, "turns": 1, "messages": 2}
    # when
    refused = post_chat(
        stack,
        tenant,
        request_body(session_id=session_id, messages=[{"role": "user", "content": "again"}], temperature=2.5),
    )
    # then
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "temperature"
    assert stored_rows(tenant) == before
    session = Session.objects.get(organization=tenant.organization, external_id=session_id)
    assert list(session.messages.values_list("seq", "role", "content")) == [
        (1, "user", "hi"),
        (2, "assistant", ECHO_OF_HI),
    ]
    assert (session.message_count, session.turn_count) == (2, 1)


@pytest.mark.parametrize(
    "unknown",
    [
        pytest.param({"foo": 1}, id="foo"),
        pytest.param({"store": True}, id="store"),
        pytest.param(
            {"foo": 1, "store": True, "reasoning_effort": "low", "x_vendor": {"a": [1]}}, id="several"
        ),
    ],
)
def test_unknown_top_level_fields_are_ignored_and_the_request_succeeds(
    stack: Stack, tenant: Tenant, unknown: dict[str, Any]
) -> None:
    # given
    session_id = f"s-{uuid.uuid4().hex}"
    # when
    response = post_chat(stack, tenant, request_body(session_id=session_id, **unknown))
    # then
    assert response.status_code == 200, response.text
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["session_id"] == session_id
    message = completion["choices"][0]["message"]
    assert (message["role"], message["content"]) == ("assistant", ECHO_OF_HI)
    turn = Turn.objects.get(organization=tenant.organization)
    assert not set(unknown) & set(turn.params)


VALID_BOUNDARIES = [
    pytest.param({"temperature": 0}, id="temperature-0"),
    pytest.param({"temperature": 2}, id="temperature-2"),
    pytest.param({"temperature": 0.0}, id="temperature-0.0"),
    pytest.param({"temperature": 2.0}, id="temperature-2.0"),
    pytest.param({"top_p": 0}, id="top-p-0"),
    pytest.param({"top_p": 1}, id="top-p-1"),
    pytest.param({"n": 1}, id="n-1"),
    pytest.param({"presence_penalty": -2}, id="presence-penalty-minus-2"),
    pytest.param({"presence_penalty": 2}, id="presence-penalty-2"),
    pytest.param({"frequency_penalty": -2}, id="frequency-penalty-minus-2"),
    pytest.param({"frequency_penalty": 2}, id="frequency-penalty-2"),
    pytest.param({"logprobs": True, "top_logprobs": 20}, id="top-logprobs-20-with-logprobs"),
    pytest.param({"logprobs": True, "top_logprobs": 0}, id="top-logprobs-0-with-logprobs"),
    pytest.param({"stop": ["#", "$", "%", "&"]}, id="stop-four-strings"),
    pytest.param({"max_tokens": 1000}, id="max-tokens-1000"),
    pytest.param({"metadata": {f"key{index}": "value" for index in range(16)}}, id="metadata-16-keys"),
    pytest.param({"logit_bias": {"50256": -100, "-1": 100}}, id="logit-bias-extremes"),
    pytest.param({"session_id": "s" * 128}, id="session-id-128-characters"),
    pytest.param({"session_id": "A-z_0.9:x"}, id="session-id-every-allowed-kind-of-character"),
    pytest.param({"seed": 2**63 - 1}, id="seed-int64-max"),
    pytest.param({"seed": -(2**63)}, id="seed-int64-min"),
    pytest.param(
        {"metadata": {"note": "\u00e9\U0001f600 \\u0000"}},
        id="metadata-accented-emoji-and-an-escaped-nul-as-text",
    ),
]


@pytest.mark.parametrize("changes", VALID_BOUNDARIES)
def test_valid_boundary_values_are_accepted_and_the_turn_is_stored(
    stack: Stack, tenant: Tenant, changes: dict[str, Any]
) -> None:
    # given
    body = request_body(**changes)
    # when
    response = post_chat(stack, tenant, body)
    # then
    assert response.status_code == 200, response.text
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["session_id"] == body["session_id"]
    message = completion["choices"][0]["message"]
    assert (message["role"], message["content"]) == ("assistant", ECHO_OF_HI)
    assert stored_rows(tenant) == {"sessions": 1, "turns": 1, "messages": 2}
    assert Session.objects.filter(organization=tenant.organization, external_id=body["session_id"]).exists()


def test_the_openai_sdk_raises_bad_request_naming_temperature_and_nothing_is_stored(
    client: openai.OpenAI, tenant: Tenant
) -> None:
    # given
    before = stored_rows(tenant)
    # when
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="echo", messages=[USER_HI], temperature=3)
    # then
    error = raised.value
    assert error.status_code == 400
    assert error.param == "temperature"
    assert error.type == "invalid_request_error"
    assert error.code == INVALID
    assert isinstance(error.body, dict)
    assert error.body["param"] == "temperature"
    assert error.body["type"] == "invalid_request_error"
    assert stored_rows(tenant) == before
