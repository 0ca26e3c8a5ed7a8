"""Many concurrent calls with the async client: one event loop, one connection pool, 50 requests at once."""

import asyncio
import os
import time

from openai import AsyncOpenAI


async def main() -> None:
    client = AsyncOpenAI(
        base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1", api_key=os.environ["LOCKGATE_KEY"]
    )
    started = time.perf_counter()

    async def ask(i: int) -> str:
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"question {i}"}])
        return reply.choices[0].message.content or ""

    answers = await asyncio.gather(*(ask(i) for i in range(50)))
    print(f"{len(answers)} answers in {time.perf_counter() - started:.2f}s; all distinct: {len(set(answers)) == len(answers)}")
    await client.close()


asyncio.run(main())
