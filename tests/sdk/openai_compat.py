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

routed = client.chat.completions.create(
    model="test/ok", messages=[{"role": "user", "content": "hi"}], extra_body={"usage": {"include": True}}
)
assert routed.model == "test/ok", routed.model  # the catalogue id, not the provider's name
assert routed.usage.model_extra["cost"] > 0, routed.usage

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

emb = client.embeddings.create(model="test/embed", input=["one", "two"])
assert emb.model == "test/embed" and len(emb.data) == 2, emb
assert emb.data[0].embedding == [0.25, -0.5, 0.125], emb.data[0]
assert emb.usage.prompt_tokens == 6, emb.usage

# A request with an ordinary photo (1.5 MB as a data URL) is accepted.
photo = "data:image/jpeg;base64," + "A" * 1_500_000
r = client.chat.completions.create(model="test/ok", messages=[{"role": "user", "content": [
    {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": photo}}]}])
assert r.model == "test/ok", r

# Every provider failing (500, refused connection): a 502 the SDK raises as APIStatusError.
try:
    client.chat.completions.create(model="test/fail", messages=[{"role": "user", "content": "x"}])
except openai.APIStatusError as e:
    assert e.status_code == 502 and e.code == "upstream_error", e
else:
    raise AssertionError("a failing provider must raise")

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

# models.retrieve, and timestamps Python parses.
m = client.models.retrieve("test/ok")
assert m.id == "test/ok", m
import datetime
key = client.get("/key", cast_to=object)
datetime.datetime.fromisoformat(key["data"]["created_at"].replace("Z", "+00:00"))

# Every provider rate-limited: RateLimitError with the provider's Retry-After.
try:
    client.chat.completions.create(model="test/ratelimited", messages=[{"role": "user", "content": "x"}])
except openai.RateLimitError as e:
    assert e.code == "upstream_rate_limited", e
    assert e.response.headers.get("retry-after") == "7", e.response.headers
else:
    raise AssertionError("all providers rate-limited must raise RateLimitError")

# A provider refusing the operator's credentials is not the client's 401.
try:
    client.chat.completions.create(model="test/auth", messages=[{"role": "user", "content": "x"}])
except openai.AuthenticationError:
    raise AssertionError("the provider's 401 must not blame the client's key")
except openai.APIStatusError as e:
    assert e.status_code == 502 and e.code == "upstream_auth_error", e
else:
    raise AssertionError("a provider credentials failure must raise")

# A stream cut after its first bytes raises from the iteration, after the content so far.
got = ""
try:
    for chunk in client.chat.completions.create(
        model="test/stall", stream=True, messages=[{"role": "user", "content": "x"}]
    ):
        if chunk.choices:
            got += chunk.choices[0].delta.content or ""
except openai.APIError as e:
    assert "stream failed" in str(e), e
else:
    raise AssertionError("a cut stream must raise")
assert got == "tick ", got

print("openai sdk: all checks passed")
