"""Chat through Lockgate with the official openai SDK: only base_url and the key change."""

import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1", api_key=os.environ["LOCKGATE_KEY"])

reply = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name one prime number."}],
)
print(reply.choices[0].message.content)
print("tokens:", reply.usage.total_tokens if reply.usage else None)
