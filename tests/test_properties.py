"""Property tests (hypothesis): the chat request validator answers every JSON body with a request
or a 400 in the envelope, never a crash; and transcript reconstruction keeps every message once
whatever mix of resent transcripts, new-message-only requests and retries a client sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.errors import ApiError, InvalidJson, InvalidRequest
from sessions.api.chat_serializers import parse_chat_request
from sessions.history import INSTRUCTION_ROLES, history_window, recent_window, window_bound
from sessions.transcript import ends_needed, unseen_messages, unseen_messages_at_ends

# --- the request validator ------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "robot", 7])
message_like = st.fixed_dictionaries(
    {"role": roles},
    optional={
        "content": json_values | st.lists(st.fixed_dictionaries({"type": st.text(max_size=10)}), max_size=3),
        "name": json_values,
        "tool_calls": json_values,
        "tool_call_id": json_values,
    },
)
request_like = st.fixed_dictionaries(
    {"messages": st.lists(message_like, max_size=4) | json_values},
    optional={
        "model": json_values,
        "temperature": json_values,
        "n": json_values,
        "stream": json_values,
        "stream_options": json_values,
        "stop": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "response_format": json_values,
        "logit_bias": json_values,
        "metadata": json_values,
        "session_id": json_values,
        "conversation": json_values,
        "functions": json_values,
        "function_call": json_values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values | request_like)
def test_any_json_body_is_a_request_or_a_400_in_the_envelope(body: Any) -> None:
    try:
        request = parse_chat_request(body)
    except (InvalidRequest, InvalidJson) as refused:
        # then: a 400 whose envelope names what is wrong
        assert refused.status == 400
        error = refused.payload()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]
        assert error["code"]
        return
    except ApiError as other:  # pragma: no cover - shown by hypothesis if it ever happens
        raise AssertionError(f"not a 400: {other.status} {other.payload()}") from other
    assert request.turn.messages


texts = st.text(alphabet="ab ?", min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    contents=st.lists(texts, min_size=1, max_size=6),
    model=st.sampled_from(["echo", "echo:s-1", "support"]),
    temperature=st.none() | st.floats(min_value=0, max_value=2),
)
def test_a_valid_request_keeps_its_messages_in_order(contents, model, temperature) -> None:
    messages = [
        {"role": "user" if index % 2 == 0 else "assistant", "content": content}
        for index, content in enumerate(contents)
    ]
    body: dict[str, Any] = {"model": model, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature

    request = parse_chat_request(body)

    assert request.turn.messages == messages
    assert request.turn.agent_slug == model.partition(":")[0]
    assert request.turn.session_id == (model.partition(":")[2] or None)


# --- transcript reconstruction --------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One exchange of a client with a session: its new user message, how it sends it, and
    whether the turn failed (no answer stored) so that the client sends the same request again."""

    text: str
    resend_whole_transcript: bool
    fails_once: bool


steps = st.lists(
    st.builds(Step, text=texts, resend_whole_transcript=st.booleans(), fails_once=st.booleans()),
    min_size=1,
    max_size=8,
)


@settings(max_examples=500, deadline=None)
@given(steps=steps, system=st.none() | texts)
def test_resent_transcripts_and_retries_keep_every_message_once(
    steps: list[Step], system: str | None
) -> None:
    stored: list[dict[str, Any]] = []  # what the session keeps
    seen: list[dict[str, Any]] = []  # what the client holds: the conversation as it saw it
    if system is not None:
        seen.append({"role": "system", "content": system})
    expected = list(seen)
    for number, step in enumerate(steps):
        user = {"role": "user", "content": step.text}
        if step.resend_whole_transcript:
            request = [*seen, user]
        else:
            request = ([seen[0]] if system is not None else []) + [user]
        attempts = 2 if step.fails_once else 1
        for attempt in range(attempts):
            # the turn stores the request's unseen messages before the agent runs
            stored += unseen_messages(stored, request)
            if attempt == attempts - 1:
                answer = {"role": "assistant", "content": f"answer {number}"}
                stored.append(answer)
        seen += [user, answer]
        expected += [user, answer]

    assert stored == expected


# --- reading a long transcript by its ends and its window ------------------------------------------

short_texts = st.sampled_from(["a", "b", "a longer message of several words"])
stored_messages = st.lists(
    st.builds(
        lambda role, text: {"role": role, "content": text},
        st.sampled_from(["system", "developer", "user", "assistant", "tool"]),
        short_texts,
    ),
    max_size=30,
)


@settings(max_examples=500, deadline=None)
@given(stored=stored_messages, incoming=stored_messages.filter(bool), reuse=st.integers(0, 30))
def test_the_transcripts_ends_answer_as_the_whole_transcript(stored, incoming, reuse) -> None:
    # given a request that may repeat the transcript's first or last messages
    incoming = (stored[:reuse] if reuse % 2 else stored[-reuse:] if reuse else []) + incoming
    needed = ends_needed(incoming)
    if len(stored) <= 2 * needed:
        return  # the runner reads such a transcript whole
    # then its two ends tell the same new messages as the whole of it
    assert unseen_messages_at_ends(stored[:needed], stored[-needed:], incoming) == unseen_messages(
        stored, incoming
    )


@settings(max_examples=500, deadline=None)
@given(
    stored=stored_messages.filter(bool),
    max_messages=st.none() | st.integers(0, 12),
    max_tokens=st.none() | st.integers(0, 80),
)
def test_the_last_messages_a_window_can_hold_make_the_same_window(stored, max_messages, max_tokens) -> None:
    bound = window_bound(max_messages=max_messages, max_tokens=max_tokens)
    if bound is None:
        return
    lead = 0
    while lead < len(stored) and stored[lead]["role"] in INSTRUCTION_ROLES:
        lead += 1
    # the leading instructions and the last `bound` messages after them make the same window
    recent = stored[max(lead, len(stored) - bound) :]
    window = recent_window(stored[:lead], recent, max_messages=max_messages, max_tokens=max_tokens)
    assert window == history_window(stored, max_messages=max_messages, max_tokens=max_tokens)
