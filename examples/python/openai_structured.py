"""Structured output with the openai SDK: a pydantic model in, a parsed object out (response_format json_schema)."""

import os

from openai import OpenAI
from pydantic import BaseModel

client = OpenAI(base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1", api_key=os.environ["LOCKGATE_KEY"])


class City(BaseModel):
    name: str
    country: str
    population: int
    coastal: bool
    landmarks: list[str]


completion = client.chat.completions.parse(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Describe the city of Lisbon."}],
    response_format=City,  # sent as {"type": "json_schema", "json_schema": {"strict": true, "schema": ...}}
)
city = completion.choices[0].message.parsed
print(type(city).__name__, city.model_dump_json())

# The same without the helper: ask for a JSON schema, read the content as JSON.
raw = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "Name a colour of the rainbow."}],
    response_format={
        "type": "json_schema",
        "json_schema": {
            "name": "colour",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"colour": {"type": "string", "enum": ["red", "orange", "yellow", "green", "blue", "violet"]}},
                "required": ["colour"],
                "additionalProperties": False,
            },
        },
    },
)
print("raw:", raw.choices[0].message.content)
