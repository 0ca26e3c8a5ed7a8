"""langchain-openai's ChatOpenAI on Lockgate: invoke and stream."""

import os

from langchain_openai import ChatOpenAI

llm = ChatOpenAI(
    model="gpt-4o-mini",
    base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1",
    api_key=os.environ["LOCKGATE_KEY"],
)
print(llm.invoke("Name one prime number.").content)
for chunk in llm.stream("Count to three."):
    print(chunk.content, end="", flush=True)
print()
