"""The Anthropic SDK on Lockgate's /v1/messages: any configured model, Claude or not."""

import os

import anthropic

client = anthropic.Anthropic(base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000"), api_key=os.environ["LOCKGATE_KEY"])

message = client.messages.create(
    model="claude-sonnet", max_tokens=256, messages=[{"role": "user", "content": "Name one prime number."}]
)
print(message.content[0].text)
print("tokens:", message.usage.input_tokens, "in,", message.usage.output_tokens, "out")

with client.messages.stream(
    model="claude-sonnet", max_tokens=256, messages=[{"role": "user", "content": "Count to three."}]
) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
print()
