// Drives the gateway with the official OpenAI Node SDK.
// Usage: node openai_compat.mjs BASE_URL API_KEY
// Exits non-zero (with a message) on the first failed expectation.
import assert from "node:assert/strict";
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const ask = (model, content, extra = {}) =>
  client.chat.completions.create({ model, messages: [{ role: "user", content }], ...extra });

// A complete reply, its usage, and the catalogue id as its model.
const r = await ask("lowrouter/echo", "Hello from the SDK");
assert.equal(r.choices[0].message.content, "Hello from the SDK");
assert.equal(r.usage.prompt_tokens, 9);
assert.equal(r.usage.completion_tokens, 5);
const routed = await ask("test/ok", "hi");
assert.equal(routed.model, "test/ok", "the catalogue id, not the provider's name");

// Headers and the request id the SDK exposes.
const { data, response, request_id } = await client.chat.completions
  .create({ model: "lowrouter/auto", messages: [{ role: "user", content: "auto" }] })
  .withResponse();
assert.ok(response.headers.get("x-lowrouter-generation-id").startsWith("gen-"));
assert.ok(request_id, "x-request-id reaches the SDK");
assert.equal(typeof data.choices[0].message.content, "string");

// A stream with its usage chunk.
let text = "";
let usage = null;
const stream = await ask("lowrouter/echo", "one two three four five six", {
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text, "one two three four five six");
assert.equal(usage?.completion_tokens, 7);

// Embeddings, metered like chat (the SDK asks for base64 vectors unless told otherwise).
const emb = await client.embeddings.create({
  model: "test/embed",
  input: ["one", "two"],
  encoding_format: "float",
});
assert.equal(emb.model, "test/embed");
assert.equal(emb.data.length, 2);
assert.deepEqual(emb.data[0].embedding, [0.25, -0.5, 0.125]);
assert.equal(emb.usage.prompt_tokens, 6);

// A request with an ordinary photo (1.5 MB as a data URL) is accepted.
const photo = "data:image/jpeg;base64," + "A".repeat(1_500_000);
const seen = await client.chat.completions.create({
  model: "test/ok",
  messages: [{ role: "user", content: [
    { type: "text", text: "what is this?" },
    { type: "image_url", image_url: { url: photo } },
  ] }],
});
assert.equal(seen.model, "test/ok");

// Every provider failing (500, refused connection): a 502.
await assert.rejects(ask("test/fail", "x"), (e) => {
  assert.equal(e.status, 502);
  assert.equal(e.code, "upstream_error");
  return true;
});

// Models: the list and one model.
const ids = [];
for await (const m of client.models.list()) ids.push(m.id);
assert.ok(ids.includes("lowrouter/echo"), ids.join(","));
assert.equal((await client.models.retrieve("test/ok")).id, "test/ok");

// Errors become the SDK's classes, and never echo the token.
const bad = new OpenAI({ baseURL, apiKey: "lr-sk-not-a-real-key", maxRetries: 0 });
const badAsk = bad.chat.completions.create({
  model: "lowrouter/echo",
  messages: [{ role: "user", content: "x" }],
});
await assert.rejects(badAsk, (e) => {
  assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
  assert.equal(e.status, 401);
  assert.ok(!String(e.message).includes("lr-sk-not-a-real-key"));
  return true;
});
await assert.rejects(ask("nope/nothing", "x"), (e) => {
  assert.ok(e instanceof OpenAI.NotFoundError, String(e));
  assert.equal(e.code, "model_not_found");
  return true;
});
await assert.rejects(ask("test/ratelimited", "x"), (e) => {
  assert.ok(e instanceof OpenAI.RateLimitError, String(e));
  assert.equal(e.code, "upstream_rate_limited");
  assert.equal(e.headers.get("retry-after"), "7");
  return true;
});
await assert.rejects(ask("test/auth", "x"), (e) => {
  assert.ok(!(e instanceof OpenAI.AuthenticationError), "the provider's 401 is not the client's");
  assert.equal(e.status, 502);
  assert.equal(e.code, "upstream_auth_error");
  return true;
});

// A stream cut after its first bytes throws from the iteration, after the content so far.
let got = "";
await assert.rejects(
  (async () => {
    for await (const chunk of await ask("test/stall", "x", { stream: true })) {
      if (chunk.choices.length) got += chunk.choices[0].delta.content ?? "";
    }
  })(),
  (e) => {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.match(String(e.message), /stream failed/);
    return true;
  },
);
assert.equal(got, "tick ");

console.log("openai node sdk: all checks passed");
