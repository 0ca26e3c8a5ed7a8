"""langchain-openai tool binding on Lockgate: bind_tools, read tool_calls, run the tool, send the result back."""

import os

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"18 degrees and sunny in {city}"


llm = ChatOpenAI(
    model="gpt-4o-mini",
    base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1",
    api_key=os.environ["LOCKGATE_KEY"],
).bind_tools([get_weather])

messages = [HumanMessage("What is the weather in Paris?")]
ai = llm.invoke(messages)
messages.append(ai)
for call in ai.tool_calls:
    print("tool call:", call["name"], call["args"])
    messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
print("answer:", llm.invoke(messages).content)
