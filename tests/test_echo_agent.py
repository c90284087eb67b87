"""The echo agent through the official SDK: tools, n, formats, limits, logprobs."""

from __future__ import annotations

import json

from sessions.models import Message

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "clock", "parameters": {"type": "object", "properties": {}}},
}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_forced_tool_choice_returns_one_valid_call(client):
    completion = client.chat.completions.create(
        model="echo",
        messages=[user("Weather in Paris?")],
        tools=[CLOCK, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Weather in Paris?", "unit": "celsius", "days": 1}


def test_required_tool_choice_calls_the_first_tool(client):
    completion = client.chat.completions.create(
        model="echo", messages=[user("anything")], tools=[CLOCK, WEATHER], tool_choice="required"
    )
    assert completion.choices[0].message.tool_calls[0].function.name == "clock"


def test_auto_tool_choice_calls_a_tool_the_user_names(client):
    named = client.chat.completions.create(model="echo", messages=[user("use get_weather")], tools=[WEATHER])
    unnamed = client.chat.completions.create(model="echo", messages=[user("just chat")], tools=[WEATHER])
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert unnamed.choices[0].message.tool_calls is None
    assert unnamed.choices[0].finish_reason == "stop"


def test_tool_choice_none_answers_in_text(client):
    completion = client.chat.completions.create(
        model="echo", messages=[user("use get_weather")], tools=[WEATHER], tool_choice="none"
    )
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].message.content.startswith("You said: use get_weather")


def test_tool_result_sent_with_the_session_gets_a_text_answer(client, tenant):
    # given an answer that ends in a tool call
    first = client.chat.completions.create(
        model="echo",
        messages=[user("Weather?")],
        tools=[WEATHER],
        tool_choice="required",
        extra_body={"session_id": "tools-1"},
    )
    call = first.choices[0].message.tool_calls[0]
    # when the client sends only the tool result with the session id
    second = client.chat.completions.create(
        model="echo",
        messages=[{"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}],
        tools=[WEATHER],
        extra_body={"session_id": "tools-1"},
    )
    # then
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == 'The tool get_weather returned: {"temp": 21}'
    stored = list(
        Message.objects.filter(session__external_id="tools-1", session__organization=tenant.organization)
        .order_by("seq")
        .values_list("role", "tool_call_id")
    )
    assert stored == [("user", ""), ("assistant", ""), ("tool", call.id), ("assistant", "")]
    assistant = Message.objects.get(
        session__external_id="tools-1", session__organization=tenant.organization, seq=2
    )
    assert assistant.tool_calls[0]["id"] == call.id


def test_n_gives_n_choices_and_the_session_keeps_the_first(client, tenant):
    completion = client.chat.completions.create(
        model="echo", messages=[user("hi")], n=3, extra_body={"session_id": "n-3"}
    )
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert {choice.message.content for choice in completion.choices} == {
        "You said: hi\n(1 message in context)"
    }
    assert (
        Message.objects.filter(session__external_id="n-3", session__organization=tenant.organization).count()
        == 2
    )
    single = client.chat.completions.create(model="echo", messages=[user("hi")])
    assert completion.usage.completion_tokens == 3 * single.usage.completion_tokens


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client):
    for limits in ({"max_tokens": 2}, {"max_completion_tokens": 2}):
        completion = client.chat.completions.create(
            model="echo", messages=[user("a long message here")], **limits
        )
        assert completion.choices[0].finish_reason == "length"
        assert completion.choices[0].message.content == "You said"
        assert completion.usage.completion_tokens == 2


def test_stop_sequence_ends_the_answer(client):
    completion = client.chat.completions.create(model="echo", messages=[user("alpha beta")], stop=["beta"])
    assert completion.choices[0].message.content == "You said: alpha "
    assert completion.choices[0].finish_reason == "stop"


def test_json_schema_response_format_gives_a_valid_instance(client):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "number", "minimum": 0.5}},
        "required": ["answer", "score"],
    }
    completion = client.chat.completions.create(
        model="echo",
        messages=[user("rate it")],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "rating", "schema": schema, "strict": True},
        },
    )
    assert json.loads(completion.choices[0].message.content) == {"answer": "rate it", "score": 0.5}


def test_json_object_response_format_gives_json(client):
    completion = client.chat.completions.create(
        model="echo", messages=[user("as json")], response_format={"type": "json_object"}
    )
    assert json.loads(completion.choices[0].message.content) == {
        "you_said": "as json",
        "messages_in_context": 1,
    }


def test_logprobs_are_returned_per_token(client):
    completion = client.chat.completions.create(
        model="echo", messages=[user("hi")], logprobs=True, top_logprobs=2
    )
    content = completion.choices[0].logprobs.content
    assert "".join(entry.token for entry in content) == completion.choices[0].message.content
    assert all(entry.logprob == 0.0 and entry.top_logprobs[0].token == entry.token for entry in content)


def test_deprecated_functions_get_a_function_call_back(client):
    completion = client.chat.completions.create(
        model="echo",
        messages=[user("weather")],
        functions=[WEATHER["function"]],
        function_call={"name": "get_weather"},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments)["unit"] == "celsius"
    assert choice.message.tool_calls is None


def test_content_parts_are_accepted_and_read_as_text(client):
    completion = client.chat.completions.create(
        model="echo",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look at"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
    )
    assert completion.choices[0].message.content == "You said: look at\n[image_url]\n(1 message in context)"
