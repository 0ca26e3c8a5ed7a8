"""Lockgate's errors are OpenAI's: the SDK raises its own exception classes, with Lockgate's codes."""

import os

import openai
from openai import OpenAI

URL = os.environ.get("LOCKGATE_URL", "http://127.0.0.1:4000") + "/v1"
client = OpenAI(base_url=URL, api_key=os.environ["LOCKGATE_KEY"], max_retries=0)

try:
    OpenAI(base_url=URL, api_key="lg-not-a-real-key", max_retries=0).models.list()
except openai.AuthenticationError as err:
    print("AuthenticationError", err.status_code, err.code)

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
except openai.NotFoundError as err:
    print("NotFoundError", err.status_code, err.code)

try:
    client.chat.completions.create(model="gpt-4o-mini", messages=[])
except openai.BadRequestError as err:
    print("BadRequestError", err.status_code, err.param)

# A key's rpm/tpm or budget refusal is openai.RateLimitError (429, code rate_limit_exceeded or insufficient_quota).
