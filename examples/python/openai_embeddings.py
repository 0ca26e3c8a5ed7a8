"""Embeddings, and the cosine similarity of two texts."""

import math
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1", api_key=os.environ["LOCKGATE_KEY"])

result = client.embeddings.create(model="text-embedding-3-small", input=["The food was delicious.", "The waiter was friendly."])
a, b = (item.embedding for item in result.data)
cosine = sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))
print(f"{len(result.data)} vectors of {len(a)} dimensions; cosine similarity {cosine:.3f}")
