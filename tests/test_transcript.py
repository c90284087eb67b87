"""Which messages of a request are new to a session (sessions.transcript.unseen_messages)."""

from sessions.transcript import unseen_messages


def msg(role: str, content, **extra) -> dict:
    return {"role": role, "content": content, **extra}


STORED = [msg("system", "rules"), msg("user", "hi"), msg("assistant", "hello")]


def test_everything_is_new_to_an_empty_session():
    assert unseen_messages([], [msg("user", "a")]) == [msg("user", "a")]


def test_a_resent_transcript_adds_only_what_follows_it():
    assert unseen_messages(STORED, [*STORED, msg("user", "next")]) == [msg("user", "next")]


def test_text_parts_equal_a_plain_string():
    resent = [
        msg("system", [{"type": "text", "text": "rules"}]),
        msg("user", "hi"),
        msg("assistant", "hello"),
    ]
    assert unseen_messages(STORED, [*resent, msg("user", "next")]) == [msg("user", "next")]


def test_a_repeated_leading_system_prompt_is_not_new():
    assert unseen_messages(STORED, [msg("system", "rules"), msg("user", "next")]) == [msg("user", "next")]


def test_a_changed_system_prompt_is_new():
    incoming = [msg("system", "new rules"), msg("user", "next")]
    assert unseen_messages(STORED, incoming) == incoming


def test_the_unanswered_tail_of_a_failed_turn_is_not_new():
    stored = [*STORED, msg("user", "lost?")]
    assert unseen_messages(stored, [msg("user", "lost?")]) == []
    assert unseen_messages(stored, [msg("user", "lost?"), msg("user", "more")]) == [msg("user", "more")]


def test_the_same_text_after_an_answer_is_new():
    assert unseen_messages(STORED, [msg("user", "hi")]) == [msg("user", "hi")]


def test_tool_call_ids_do_not_matter_but_names_and_arguments_do():
    call = {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    stored = [msg("user", "go"), msg("assistant", None, tool_calls=[call])]
    same = [msg("user", "go"), msg("assistant", None, tool_calls=[{**call, "id": "call_legacy_f"}])]
    other = [
        msg("user", "go"),
        msg("assistant", None, tool_calls=[{**call, "function": {"name": "g", "arguments": "{}"}}]),
    ]
    tool = msg("tool", "42", tool_call_id="call_a")
    assert unseen_messages(stored, [*same, tool]) == [tool]
    assert unseen_messages(stored, [*other, tool]) == [*other, tool]
