"""Drives the gateway with the official OpenAI Python SDK.

Usage: python3 openai_compat.py BASE_URL API_KEY
Exits non-zero (with a message) on the first failed expectation.
"""
import sys

import openai
from openai import OpenAI

base_url, api_key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

r = client.chat.completions.create(
    model="lowrouter/echo", messages=[{"role": "user", "content": "Hello from the SDK"}]
)
assert r.choices[0].message.content == "Hello from the SDK", r
assert r.usage.prompt_tokens == 9 and r.usage.completion_tokens == 5, r.usage

raw = client.chat.completions.with_raw_response.create(
    model="lowrouter/auto", messages=[{"role": "user", "content": "auto"}]
)
assert raw.headers.get("x-lowrouter-generation-id", "").startswith("gen-"), raw.headers
assert isinstance(raw.parse().choices[0].message.content, str)

text = ""
usage = None
for chunk in client.chat.completions.create(
    model="lowrouter/echo",
    stream=True,
    stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "one two three four five six"}],
):
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage
assert text == "one two three four five six", text
assert usage is not None and usage.completion_tokens == 7, usage

models = [m.id for m in client.models.list()]
assert "lowrouter/echo" in models, models

bad = OpenAI(base_url=base_url, api_key="lr-sk-not-a-real-key", max_retries=0)
try:
    bad.chat.completions.create(model="lowrouter/echo", messages=[{"role": "user", "content": "x"}])
except openai.AuthenticationError as e:
    assert e.status_code == 401
    assert "lr-sk-not-a-real-key" not in str(e)
else:
    raise AssertionError("a bad key must raise AuthenticationError")

try:
    client.chat.completions.create(model="nope/nothing", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e
else:
    raise AssertionError("an unknown model must raise NotFoundError")

print("openai sdk: all checks passed")
