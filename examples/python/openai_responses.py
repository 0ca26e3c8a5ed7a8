"""OpenAI's Responses API through Lockgate: a response, then a second turn chained with previous_response_id."""

import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1", api_key=os.environ["LOCKGATE_KEY"])

first = client.responses.create(model="gpt-4o-mini", instructions="You are terse.", input="Name one prime number.")
print(first.output_text)
second = client.responses.create(model="gpt-4o-mini", input="And another one?", previous_response_id=first.id)
print(second.output_text)
print("stored:", client.responses.retrieve(first.id).id == first.id)
