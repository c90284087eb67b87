def test_echo_answers_a_chat_completion(client, tenant):
    completion = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "You said: hi\n(1 message in context)"
