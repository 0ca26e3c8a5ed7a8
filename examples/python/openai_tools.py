"""A tool round trip with the openai SDK: the model asks for a tool, we run it here, it answers with the result."""

import json
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1", api_key=os.environ["LOCKGATE_KEY"])


def get_weather(city: str, unit: str = "celsius") -> dict:
    """The local function the model may call (a real one would ask a weather service)."""
    return {"city": city, "temperature": 18 if unit == "celsius" else 64, "unit": unit}


tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    }
]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]

while True:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    message = reply.choices[0].message
    if not message.tool_calls:
        break
    messages.append(message.model_dump(exclude_none=True))  # the assistant's turn, with its tool calls
    for call in message.tool_calls:
        args = json.loads(call.function.arguments)
        print("call:", call.function.name, args)
        result = get_weather(**args)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})

print("answer:", message.content)
